"""What a job learns from the Hydra launcher that started it: the launcher's name, the cores it was given, and
the command that reproduces it. :func:`sigebench.tasks.resolve_threads` pins the thread count to those cores and
every row records ``threads`` and ``launcher``.

Cores per job, by launcher (``hydra.launcher._target_`` of the job's Hydra config):

- Ray: the CPUs the task reserved (``hydra.launcher.ray.remote.num_cpus``, Ray's default 1).
- submitit (SLURM, local): ``$SLURM_CPUS_PER_TASK`` inside a SLURM allocation, else ``hydra.launcher.cpus_per_task``.
- joblib: this machine's cores split between the ``n_jobs`` jobs that run at once.
- otherwise (one job at a time): every core this process may run on.

Never more than the cores this process may run on (its CPU affinity: taskset, cgroup cpusets, SLURM binding).
"""

from __future__ import annotations

import os
import shlex
from typing import Any


def _hydra_config() -> Any | None:
    """The running job's Hydra config (``hydra.*``), or None outside a Hydra job."""
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:
        return None
    return HydraConfig.get() if HydraConfig.initialized() else None


def launcher_name() -> str:
    """The ``hydra/launcher`` config the job runs under (``basic`` for in-process, one job at a time)."""
    hc = _hydra_config()
    choice = hc.runtime.choices.get("hydra/launcher") if hc is not None else None
    return str(choice) if choice else "basic"


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _ray_cpus() -> int | None:
    import ray

    if not ray.is_initialized():
        return None
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return max(1, int(cpus)) if cpus else None


def allotted_cores() -> tuple[int, str | None]:
    """(cores this job may use, the setting that allotted them; None when the job has the whole machine)."""
    cores = usable_cores()
    hc = _hydra_config()
    launcher = hc.launcher if hc is not None else {}
    target = str(launcher.get("_target_", "")).lower()
    share: int | None = None
    setting = None
    if "ray" in target:
        share, setting = _ray_cpus(), "hydra.launcher.ray.remote.num_cpus"
    elif "submitit" in target:
        slurm = os.environ.get("SLURM_CPUS_PER_TASK")
        share = int(slurm) if slurm else launcher.get("cpus_per_task")
        setting = "hydra.launcher.cpus_per_task"
    elif "joblib" in target:
        n = int(launcher.get("n_jobs", 1) or 1)
        jobs = cores if n < 0 else max(1, n)
        if jobs > 1:
            share, setting = max(1, cores // jobs), f"hydra.launcher.n_jobs={n} on {cores} cores"
    if share is None:
        return cores, None
    return max(1, min(int(share), cores)), setting


def job_command() -> str | None:
    """``scripts/run.py <overrides>`` of a job started by Hydra (a sweep point's own settings, wherever it runs);
    None outside Hydra (the caller's command line is recorded then)."""
    hc = _hydra_config()
    if hc is None:
        return None
    return shlex.join(["run.py", *hc.overrides.task])
