"""Sweeps and reproduce-table through submitit's local executor (the SLURM launcher's, run on this machine)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sigebench.results import ResultsStore

from .ray_head import group_processes

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the cluster extra is not installed")

ROOT = Path(__file__).resolve().parents[2]
FAST = ["timing.warmup=0", "timing.repeats=1", "variants=[original,sige]"]
TIMEOUT_S = 600


def test_two_point_sweep_through_submitit_local(tmp_path):
    out = tmp_path / "sweep.csv"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run.py"), "-m", "hydra/launcher=submitit_local",
         "hydra.launcher.cpus_per_task=1", f"hydra.sweep.dir={tmp_path / 'multirun'}", "model=engine_conv",
         "edit=synthetic", "edit.area=0.005,0.05", f"output={out}", *FAST],
        capture_output=True, text=True, cwd=tmp_path, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    rows = ResultsStore(out).rows()
    assert sorted((r["edit"], r["variant"]) for r in rows) == [
        ("synthetic@0.005", "original"), ("synthetic@0.005", "sige"),
        ("synthetic@0.05", "original"), ("synthetic@0.05", "sige"),
    ]  # fmt: skip
    for r in rows:
        settings = json.loads(r["settings"])
        assert settings["edit"]["area"] == float(r["edit"].split("@")[1]) and settings["threads"] == 1
        assert r["threads"] == 1 and r["launcher"] == "submitit_local"  # hydra.launcher.cpus_per_task
    sparse = {r["edit"]: r["macs"] for r in rows if r["variant"] == "sige"}
    assert sparse["synthetic@0.005"] < sparse["synthetic@0.05"]
    assert len(list((tmp_path / "multirun" / ".submitit").glob("*/*_result.pkl"))) == 2  # one result per job


def test_reproduce_table_through_submitit_reports_a_killed_job_and_re_runs_it(tmp_path):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "jobs:\n"
        "  - overrides: [model=engine_conv, edit=synthetic, edit.area=0.012]\n"
        "  - overrides: [model=engine_conv, edit=synthetic, edit.area=0.05, timing.min_time_s=6]\n"
    )
    out = tmp_path / "eff.csv"
    cmd = [sys.executable, str(ROOT / "scripts" / "reproduce_table.py"), "--launcher", "submitit_local",
           "--jobs", str(jobs), "--output", str(out), "--table", str(tmp_path / "TABLE.md"), *FAST,
           "hydra.launcher.cpus_per_task=1", f"hydra.sweep.dir={tmp_path / 'multirun'}"]  # fmt: skip
    store = ResultsStore(out)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True)  # fmt: skip
    try:
        deadline, killed = time.time() + TIMEOUT_S, None
        while killed is None and time.time() < deadline and proc.poll() is None:
            running = [pid for pid, cmd in group_processes(proc.pid) if "submitit.core._submit" in cmd]
            if any(r["edit"] == "synthetic@0.012" for r in store.rows()) and len(running) == 1:
                killed = running[0]  # the slow job, measuring
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.2)
        err = proc.communicate(timeout=TIMEOUT_S)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed is not None, f"the slow job was never seen running:\n{err[-3000:]}"
    assert proc.returncode == 1, err[-3000:]
    name = "model=engine_conv edit=synthetic edit.area=0.05 timing.min_time_s=6"
    assert f"FAILED {name}: JobLostError: submitit job" in err and f"failed: {name}" in err
    assert {r["edit"] for r in store.rows()} == {"synthetic@0.012"}

    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=TIMEOUT_S)
    assert again.returncode == 0, again.stderr[-3000:]
    rows = store.rows()
    assert sorted(r["variant"] for r in rows if r["edit"] == "synthetic@0.05") == ["original", "sige"]
    quick = [r for r in rows if r["edit"] == "synthetic@0.012"]
    assert len(quick) == 2 * len({r["code_version"] for r in quick})  # reused (unless the checkout changed between)
    assert "synthetic@0.05" in (tmp_path / "TABLE.md").read_text()
