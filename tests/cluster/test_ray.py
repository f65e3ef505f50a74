"""Sweeps and reproduce-table on a real Ray head, started by these tests on 127.0.0.1 and shared by them."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sigebench import reproduce
from sigebench.results import ResultsStore

from .ray_head import group_processes, local_only_env, ray_head

pytest.importorskip("ray", reason="the cluster extra is not installed")
pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the cluster extra is not installed")

ROOT = Path(__file__).resolve().parents[2]
FAST = ["timing.warmup=0", "timing.repeats=1", "variants=[original,sige]"]
TIMEOUT_S = 600  # every command is bounded; a hang fails the test instead of the suite


@pytest.fixture(scope="module")
def head():
    with ray_head(num_cpus=2) as (address, pgid):
        yield address, pgid


def run(script, *args, env, cwd):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=TIMEOUT_S)  # fmt: skip


def macs(rows):
    return {(r["model"], r["component"], r["edit"], r["variant"]): r["macs"] for r in rows}


def table_macs(text):
    """(model, component, edit, variant) -> (MACs, published, match) of a TABLE.md."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) > 8 and cells[4] in ("original", "sige", "sige_fast"):
            out[(cells[0], cells[1], cells[2], cells[4])] = (cells[5], cells[6], cells[7])
    return out


def test_two_point_sweep_on_the_ray_head(head, tmp_path):
    address, _ = head
    out = tmp_path / "sweep.csv"
    res = run("run.py", "-m", "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={address}",
              "hydra.launcher.ray.remote.num_cpus=1", f"hydra.sweep.dir={tmp_path / 'multirun'}", "model=engine_conv",
              "edit=synthetic", "edit.area=0.005,0.05", f"output={out}", *FAST,
              env=local_only_env(), cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    rows = ResultsStore(out).rows()
    assert sorted((r["edit"], r["variant"]) for r in rows) == [
        ("synthetic@0.005", "original"), ("synthetic@0.005", "sige"),
        ("synthetic@0.05", "original"), ("synthetic@0.05", "sige"),
    ]  # fmt: skip
    for r in rows:
        settings = json.loads(r["settings"])
        area = float(r["edit"].split("@")[1])
        assert settings["edit"]["area"] == area and settings["model"]["name"] == "engine_example_conv"
        assert f"edit.area={area}" in r["command"] and "," not in r["command"].split("edit.area=")[1].split()[0]
        assert r["threads"] == 1 and settings["threads"] == 1  # the one CPU each job reserved
        assert r["launcher"] == "ray_cluster" and r["device"] == "cpu"
    sparse = {r["edit"]: r["macs"] for r in rows if r["variant"] == "sige"}
    assert sparse["synthetic@0.005"] < sparse["synthetic@0.05"]
    assert len({r["macs"] for r in rows if r["variant"] == "original"}) == 1


def test_reproduce_table_through_ray_equals_the_sequential_run(head, tmp_path):
    address, _ = head
    common = ["--jobs", "engine", "--quick", *FAST]
    seq_csv, seq_md = tmp_path / "seq" / "efficiency.csv", tmp_path / "seq" / "TABLE.md"
    assert reproduce.main([*common, "--output", str(seq_csv), "--table", str(seq_md)]) == 0
    ray_csv, ray_md = tmp_path / "ray" / "efficiency.csv", tmp_path / "ray" / "TABLE.md"
    res = run("reproduce_table.py", "--launcher", "ray", *common, "--output", str(ray_csv), "--table", str(ray_md),
              f"hydra.sweep.dir={tmp_path / 'multirun'}", env=local_only_env(address), cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    seq, launched = ResultsStore(seq_csv).rows(), ResultsStore(ray_csv).rows()
    assert len(launched) == len(seq) == 4
    assert macs(launched) == macs(seq)  # MACs do not depend on where or with how many threads a job ran
    assert {(r["launcher"], r["threads"]) for r in launched} == {("ray_local", 1)}
    assert {r["settings_key"] for r in launched}.isdisjoint({r["settings_key"] for r in seq})  # threads differ
    assert table_macs(ray_md.read_text()) == table_macs(seq_md.read_text())  # MACs, published figures, match
    paper = "| engine_example_conv | conv | engine_example | 15.45% | sige | 0.057729 | 0.05773 | yes |"
    assert paper in ray_md.read_text()


def _busy_workers(pgid):
    return [pid for pid, cmd in group_processes(pgid) if "_run_job" in cmd and "IDLE" not in cmd]


def test_a_job_killed_mid_run_is_reported_and_re_run_on_the_next_call(head, tmp_path):
    address, pgid = head
    jobs = tmp_path / "jobs.yaml"
    # the second job measures for a while (timing.min_time_s): long enough to be killed in the middle
    jobs.write_text(
        "jobs:\n"
        "  - overrides: [model=engine_conv, edit=synthetic, edit.area=0.012]\n"
        "  - overrides: [model=engine_conv, edit=synthetic, edit.area=0.05, timing.min_time_s=6]\n"
    )
    out = tmp_path / "eff.csv"
    cmd = [sys.executable, str(ROOT / "scripts" / "reproduce_table.py"), "--launcher", "ray", "--jobs", str(jobs),
           "--output", str(out), "--table", str(tmp_path / "TABLE.md"), *FAST,
           f"hydra.sweep.dir={tmp_path / 'multirun'}"]  # fmt: skip
    store = ResultsStore(out)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=local_only_env(address),
                            cwd=tmp_path)  # fmt: skip
    try:
        deadline, killed = time.time() + TIMEOUT_S, None
        while killed is None and time.time() < deadline and proc.poll() is None:
            quick_done = any(r["edit"] == "synthetic@0.012" for r in store.rows())
            busy = _busy_workers(pgid)
            if quick_done and len(busy) == 1:  # the quick job is stored, the slow one is measuring
                killed = busy[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.2)
        _, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, f"the slow job was never seen running:\n{err[-3000:]}"
    assert proc.returncode == 1, err[-3000:]
    name = "model=engine_conv edit=synthetic edit.area=0.05 timing.min_time_s=6"
    assert f"FAILED {name}: JobLostError:" in err and f"failed: {name}" in err
    assert "run the same command again" in err
    assert {r["edit"] for r in store.rows()} == {"synthetic@0.012"}  # nothing half-written by the killed job
    assert "synthetic@0.012" in (tmp_path / "TABLE.md").read_text()

    again = subprocess.run(cmd, capture_output=True, text=True, env=local_only_env(address), cwd=tmp_path,
                           timeout=TIMEOUT_S)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    rows = store.rows()
    assert sorted(r["variant"] for r in rows if r["edit"] == "synthetic@0.05") == ["original", "sige"]
    quick = [r for r in rows if r["edit"] == "synthetic@0.012"]
    # the finished job was reused, not measured again (unless the code changed in between: a checkout being edited)
    assert len(quick) == 2 * len({r["code_version"] for r in quick})
    assert "synthetic@0.05" in (tmp_path / "TABLE.md").read_text()
    assert not _busy_workers(pgid)


def test_a_reservation_no_node_can_give_is_refused_not_waited_for(head, tmp_path):
    address, _ = head
    res = run("reproduce_table.py", "--launcher", "ray_cluster", "--jobs", "engine", "--quick", *FAST,
              "--output", str(tmp_path / "e.csv"), "--table", str(tmp_path / "T.md"),
              f"hydra.launcher.ray.init.address={address}", "hydra.launcher.ray.remote.num_cpus=4",
              f"hydra.sweep.dir={tmp_path / 'multirun'}", env=local_only_env(), cwd=tmp_path)  # fmt: skip
    assert res.returncode == 2, res.stderr[-3000:]
    assert "hydra.launcher.ray.remote.num_cpus=4, but the largest node of the Ray cluster has 2 CPUs" in res.stderr
    assert not (tmp_path / "rows").exists()


def test_ray_local_starts_a_head_for_the_sweep_and_stops_it(tmp_path):
    out = tmp_path / "sweep.csv"
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # the head's logs and sockets (short paths)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "run.py"), "-m", "hydra/launcher=ray_local",
         "+hydra.launcher.ray.init.num_cpus=2", "+hydra.launcher.ray.init.include_dashboard=false",
         f"+hydra.launcher.ray.init._temp_dir={ray_tmp}",
         f"hydra.sweep.dir={tmp_path / 'multirun'}", "model=engine_conv", "edit=synthetic", "edit.area=0.012,0.05",
         f"output={out}", *FAST],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=local_only_env(), cwd=tmp_path,
        start_new_session=True,
    )  # fmt: skip
    try:
        log = proc.communicate(timeout=TIMEOUT_S)[0]
        deadline = time.time() + 60
        while group_processes(proc.pid) and time.time() < deadline:  # the head goes with the sweep
            time.sleep(0.5)
        left = group_processes(proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, log[-3000:]
    assert "Started a local Ray instance" in log
    rows = ResultsStore(out).rows()
    assert sorted(r["edit"] for r in rows if r["variant"] == "sige") == ["synthetic@0.012", "synthetic@0.05"]
    assert {(r["launcher"], r["threads"]) for r in rows} == {("ray_local", 1)}
    assert not left, left
