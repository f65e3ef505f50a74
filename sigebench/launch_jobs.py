"""Fanning a list of jobs out through a Hydra launcher plugin (``configs/hydra/launcher/<name>.yaml``), the way
``scripts/run.py -m hydra/launcher=<name>`` fans out a sweep: the plugin composes each job's config from its
overrides (on the node, for submitit) and runs the task function there. Unlike a sweep's points, the jobs need not
form a grid (``reproduce-table --launcher``).

The Ray, submitit and joblib plugins stop collecting results at the first job whose process died and leave the
others running unwatched (or kill them). The jobs are therefore launched through subclasses of those plugins
(:mod:`sigebench.launch_ray`, :mod:`sigebench.launch_submitit`, :mod:`sigebench.launch_joblib`) that wait for every
job and return a failed result for each one that died, naming it. Sweeps of ``scripts/run.py -m`` use the plugins as
they are (Hydra loads launchers from its plugin namespace only).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sigebench.config import ConfigError
from sigebench.jobs import CONFIGS, hydra_context

# Short names accepted for the launcher configs (`make reproduce-table LAUNCHER=ray`).
ALIASES = {"joblib": "joblib_local", "ray": "ray_local"}
# Plugin class -> its subclass that waits for every job.
GATHERING = {
    "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher": "sigebench.launch_ray.RayLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher": "sigebench.launch_submitit.SlurmLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher": "sigebench.launch_submitit.LocalLauncher",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher": "sigebench.launch_joblib.JoblibLauncher",
}


class JobLostError(RuntimeError):
    """A launched job that returned nothing: its process died (killed, out of memory, node lost) or its launcher
    stopped before it finished."""


@dataclass
class Outcome:
    """What one launched job gave back: the task's return value, or why it did not finish."""

    overrides: list[str]
    value: Any = None
    error: str | None = None


def lost(error: BaseException, prefix: str = "") -> JobLostError:
    """The :class:`JobLostError` for what a launcher raised about a dead job (its first line: Ray's run for pages)."""
    text = str(error).strip()
    return JobLostError(f"{prefix}{type(error).__name__}: {text.splitlines()[0] if text else ''}")


def failed_return(overrides: Sequence[str], error: BaseException) -> Any:
    """A Hydra JobReturn that says the job failed with ``error``."""
    from hydra.core.utils import JobReturn, JobStatus

    return JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=error)


def launcher_configs() -> list[str]:
    """The ``hydra/launcher`` configs: those of ``configs/hydra/launcher/`` and those the installed plugins bring."""
    from hydra.core.global_hydra import GlobalHydra

    with hydra_context():
        return sorted(GlobalHydra.instance().config_loader().get_group_options("hydra/launcher"))


def resolve_launcher(name: str) -> str:
    """The launcher config a name (or its alias) means; a :class:`ConfigError` naming the choices otherwise."""
    config = ALIASES.get(name, name)
    known = launcher_configs()
    if config not in known:
        hint = "" if (CONFIGS / "hydra" / "launcher" / f"{config}.yaml").exists() else " (or its plugin is missing)"
        raise ConfigError(
            f"launcher {name!r}: no hydra/launcher config {config!r}{hint}; choose local, {', '.join(known)}; "
            "the Ray and SLURM launchers need the cluster extra: pip install -e '.[cluster]'"
        )
    return config


def forwarded_env() -> list[str]:
    """Overrides that give every job this process's data settings (``hydra.job.env_set``, applied around the task
    wherever it runs): the data root as an absolute path, and every other ``SIGE_*`` variable that is set."""
    from sigebench.data.download import data_root

    env = {k: v for k, v in os.environ.items() if k.startswith("SIGE_")}
    env["SIGE_DATA"] = str(data_root())
    return [f"++hydra.job.env_set.{k}={_quoted(v)}" for k, v in sorted(env.items())]


def _quoted(value: str) -> str:
    """A value as a quoted string of Hydra's override grammar."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _instantiate(cfg: Any, context: Any, task: Callable[[Any], Any]) -> Any:
    from hydra.core.plugins import Plugins
    from hydra.utils import instantiate

    target = str(cfg.hydra.launcher.get("_target_", ""))
    if target not in GATHERING:
        return Plugins.instance().instantiate_launcher(hydra_context=context, task_function=task, config=cfg)
    launcher = instantiate(cfg.hydra.launcher, _target_=GATHERING[target])
    launcher.setup(hydra_context=context, task_function=task, config=cfg)
    return launcher


def _outcome(overrides: Sequence[str], ret: Any) -> Outcome:
    from hydra.core.utils import JobStatus

    if ret is None:
        return Outcome(list(overrides), error="JobLostError: the launcher returned no result for this job")
    if ret.status == JobStatus.COMPLETED:
        return Outcome(list(overrides), value=ret._return_value)
    err = ret._return_value
    return Outcome(list(overrides), error=f"{type(err).__name__}: {err}" if err is not None else "unknown failure")


def launch(
    launcher: str, jobs: Sequence[Sequence[str]], task: Callable[[Any], Any], hydra_overrides: Sequence[str] = ()
) -> list[Outcome]:
    """Run ``task(cfg)`` for every job (``cfg`` composed from the job's overrides, as ``scripts/run.py <overrides>``
    would) through the launcher config ``launcher``; ``hydra_overrides`` (``hydra.launcher.*``, ``hydra.sweep.dir``)
    configure the launch; the jobs get this process's data settings (:func:`forwarded_env`). Returns one outcome
    per job, in order, once every job has finished or failed."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from hydra.types import HydraContext, RunMode

    name = resolve_launcher(launcher)
    with hydra_context():
        gh = GlobalHydra.instance()
        try:
            cfg = gh.hydra.compose_config(
                config_name="config", overrides=[f"hydra/launcher={name}", *forwarded_env(), *hydra_overrides],
                run_mode=RunMode.MULTIRUN, from_shell=False,
            )  # fmt: skip
        except HydraException as e:
            raise ConfigError(f"launcher settings {' '.join(hydra_overrides) or name}: {e}") from None
        previous = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(cfg)  # as Hydra does for a sweep; restored so later jobs of this process
        try:  # do not see this launcher
            context = HydraContext(config_loader=gh.config_loader(), callbacks=Callbacks(cfg))
            returns = list(_instantiate(cfg, context, task).launch([list(j) for j in jobs], initial_job_idx=0))
        finally:
            HydraConfig.instance().cfg = previous
    returns += [None] * (len(jobs) - len(returns))
    return [_outcome(j, r) for j, r in zip(jobs, returns)]
