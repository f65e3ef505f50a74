"""Thread pinning per launcher, launcher settings errors, rows that come back over the wire, one table per machine."""

import os
import signal
import sys
import time

import pytest
from hydra import compose
from hydra.core.hydra_config import HydraConfig

from sigebench import launch_env, reproduce
from sigebench.jobs import hydra_context
from sigebench.results import ResultsStore
from sigebench.tasks import resolve_threads

CORES = launch_env.usable_cores()


@pytest.fixture
def under_launcher(monkeypatch):
    """Make this process look like a job of ``hydra/launcher=<name>`` (its Hydra config set, as a launcher does)."""

    def enter(name: str, *overrides: str) -> None:
        with hydra_context():
            cfg = compose("config", [f"hydra/launcher={name}", *overrides], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)

    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    yield enter
    HydraConfig.instance().cfg = None


def test_threads_follow_the_cores_each_launcher_allots(under_launcher, monkeypatch, capsys):
    assert resolve_threads("auto") == CORES and launch_env.launcher_name() == "basic"  # alone: the whole machine
    assert resolve_threads(CORES + 1) == CORES + 1  # honoured when no launcher shares the machine

    under_launcher("joblib_local")  # n_jobs=2: the cores split between the two jobs
    assert resolve_threads("auto") == max(1, CORES // 2) and launch_env.launcher_name() == "joblib_local"

    under_launcher("slurm")  # cpus_per_task=16, never more than this machine's cores
    assert resolve_threads("auto") == min(16, CORES)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")  # inside the allocation SLURM's own figure counts
    assert resolve_threads("auto") == 1
    capsys.readouterr()
    assert resolve_threads(2) == 1  # more threads than the job was given would take other jobs' cores
    assert "threads=2 but this job has 1 core(s)" in capsys.readouterr().err

    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    under_launcher("submitit_local", "hydra.launcher.cpus_per_task=1")
    assert resolve_threads("auto") == 1 and launch_env.launcher_name() == "submitit_local"

    under_launcher("ray_local")  # the CPUs the Ray task reserved
    monkeypatch.setattr(launch_env, "_ray_cpus", lambda: 1)
    assert resolve_threads("auto") == 1 and launch_env.launcher_name() == "ray_local"
    assert launch_env.job_command().startswith("run.py")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--launcher", "nosuch"], "launcher 'nosuch': no hydra/launcher config"),
        (["hydra.launcher.n_jobs=2"], "configure a launcher; add --launcher NAME"),
        (["--launcher", "joblib", "hydra.launcher.no_such_key=1"], "launcher settings hydra.launcher.no_such_key=1"),
    ],
)
def test_launch_settings_that_cannot_work_are_one_line_errors(tmp_path, capsys, args, message):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("jobs:\n  - overrides: [model=engine_conv, edit=synthetic, edit.area=0.012]\n")
    code = reproduce.main(["--jobs", str(jobs), "--output", str(tmp_path / "e.csv"), "--table", str(tmp_path / "T.md"),
                           *args])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "rows").exists()  # nothing ran


def test_an_unreachable_ray_head_is_an_error_not_a_wait():
    pytest.importorskip("ray")
    from sigebench.config import ConfigError
    from sigebench.launch_ray import check_reachable

    from .ray_head import free_ports

    (port,) = free_ports(1)
    with pytest.raises(ConfigError, match=f"hydra.launcher.ray.init.address=10.255.255.1:{port}: no Ray head"):
        check_reachable(f"10.255.255.1:{port}", timeout_s=1)
    check_reachable(None)  # start or find one: Ray's own business


def _row(machine, variant, macs, latency, ts, **extra):
    return dict(model="engine_example_conv", component="conv", edit="engine_example", variant=variant, macs=macs,
                latency_ms=latency, edited_fraction=0.15, device="cpu", threads=2, dtype="float32", backend="native",
                machine=machine, timestamp=ts, **extra)  # fmt: skip


def test_one_table_per_machine_and_rows_returned_by_other_nodes_are_stored(tmp_path):
    store = ResultsStore(tmp_path / "efficiency.csv")
    store.write([_row("Laptop x8", "original", 301989888, 10.0, "2026-01-02T00:00:00"),
                 _row("Laptop x8", "sige", 57729024, 2.0, "2026-01-02T00:00:00")])  # fmt: skip
    # rows a job on a node without this folder returned: stored once, recognised by id afterwards
    node_rows = [_row("Xeon x64", "original", 301989888, 4.0, "2026-01-01T00:00:00", row_id="a" * 32),
                 _row("Xeon x64", "sige", 57729024, 1.0, "2026-01-01T00:00:00", row_id="b" * 32)]  # fmt: skip
    assert reproduce.store_returned(store, node_rows) == 2
    assert reproduce.store_returned(store, [*node_rows, *store.rows()[:1]]) == 0
    unnamed = {k: v for k, v in store.rows()[0].items() if k != "row_id"}  # the same measurement, without its id
    assert reproduce.store_returned(store, [unnamed]) == 0
    assert len(store.rows()) == 4

    table = tmp_path / "TABLE.md"
    paths = reproduce.write_tables(store, str(table), str(tmp_path / "none.csv"), {}, returned=node_rows)
    assert [(m, p.name) for m, p in paths] == [("Xeon x64", "TABLE.md"), ("Laptop x8", "TABLE.laptop-x8.md")]
    main, other = table.read_text(), (tmp_path / "TABLE.laptop-x8.md").read_text()
    assert "Machine: Xeon x64" in main and "TABLE.laptop-x8.md" in main and "Machine: Laptop x8" in other
    assert "| sige | 0.05773 |" in main and "| 4.00x |" in main and "4.00x" not in other  # never across machines
    assert "| 5.00x |" in other

    paths = reproduce.write_tables(store, str(table), str(tmp_path / "none.csv"), {}, returned=[])
    assert paths[0] == ("Laptop x8", table)  # nothing measured this call: the newest rows' machine
    assert os.path.exists(tmp_path / "TABLE.xeon-x64.md")


def _task(cfg):
    """A launched job that returns its area, raises, or dies (SIGKILL) depending on it."""
    area = cfg.edit.area
    if area == 0.03:
        raise ValueError("bad edit")
    if area == 0.05:
        time.sleep(2)  # the others finish first
        os.kill(os.getpid(), signal.SIGKILL)
    return area


def test_every_job_gets_an_outcome_when_one_raises_and_one_dies(tmp_path):
    from sigebench.launch_jobs import launch

    jobs = [["model=engine_conv", "edit=synthetic", f"edit.area={a}"] for a in (0.012, 0.03, 0.05)]
    outcomes = launch("joblib", jobs, _task, [f"hydra.sweep.dir={tmp_path}", "hydra.launcher.n_jobs=3"])
    assert [o.overrides for o in outcomes] == jobs
    assert outcomes[0].value == 0.012 and outcomes[0].error is None
    assert outcomes[1].error == "ValueError: bad edit"
    assert outcomes[2].error.startswith("JobLostError: TerminatedWorkerError")
    assert not HydraConfig.initialized()  # the launch leaves no Hydra job config behind


def _slurm_executor(*overrides):
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import HydraContext

    from sigebench.launch_jobs import _instantiate

    with hydra_context():
        cfg = compose("config", ["hydra/launcher=slurm", *overrides], return_hydra_config=True)
        context = HydraContext(config_loader=GlobalHydra.instance().config_loader(), callbacks=Callbacks(cfg))
        return _instantiate(cfg, context, _task)._executor()


def test_the_slurm_launcher_asks_for_the_configured_resources_with_this_venv(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from sigebench.config import ConfigError

    monkeypatch.setenv("PATH", str(tmp_path))  # no srun: not a SLURM cluster
    with pytest.raises(ConfigError, match='submitit\'s slurm executor: Could not detect "srun"'):
        _slurm_executor()
    (tmp_path / "srun").write_text("#!/bin/sh\nexit 0\n")  # a SLURM client is all submitit checks for
    (tmp_path / "srun").chmod(0o755)
    executor = _slurm_executor("hydra.launcher.partition=cpu", "hydra.launcher.cpus_per_task=32",
                               f"hydra.sweep.dir={tmp_path / 'sweep'}")._executor  # fmt: skip
    script = executor._make_submission_file_text(executor._submitit_command_str, "uid")
    for line in ("--cpus-per-task=32", "--partition=cpu", "--mem=64GB", "--time=120", "--job-name=sige"):
        assert f"#SBATCH {line}\n" in script
    assert sys.executable in script  # the jobs run this venv's python
