"""Hydra's Ray launcher, for job lists (:mod:`sigebench.launch_jobs`), made to report instead of hang or abandon.

- Connects as the plugin does (``hydra.launcher.ray.init``): ``address: null`` joins ``$RAY_ADDRESS`` or the head
  started on this machine with ``ray start``, else starts one for the run; ``auto`` or ``host:port`` joins an
  existing cluster. A ``host:port`` nobody answers at is an error naming the setting (Ray would retry for minutes).
- Refuses a per-job CPU count (``hydra.launcher.ray.remote.num_cpus``) that no node has (Ray would wait forever).
- Waits for every job: one whose worker died is a failed result naming it; the others finish. Ctrl-C cancels the
  jobs still running. A Ray instance started here is shut down at the end.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as PluginRayLauncher
from omegaconf import OmegaConf, open_dict

from sigebench.config import ConfigError
from sigebench.launch_jobs import failed_return, lost

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_reachable(address: str | None, timeout_s: float = 10.0) -> None:
    """Refuse a ``host:port`` head address that accepts no connection (the host as Ray will dial it)."""
    if not address or address in ("auto", "local") or "://" in address or ":" not in address:
        return
    import ray.util

    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    dialled = ray.util.get_node_ip_address() if _is_loopback(host) else host  # Ray swaps loopback for the node IP
    try:
        socket.create_connection((dialled, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        hint = ""
        if dialled != host:
            hint = (
                f"; Ray dials {dialled} for {host}: a head started with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 listens "
                "on 127.0.0.1 only, and its drivers need that variable too"
            )
        raise ConfigError(
            f"hydra.launcher.ray.init.address={address}: no Ray head answers at {dialled}:{port} ({e}){hint}"
        ) from None


def check_cpus(num_cpus: Any) -> None:
    """Refuse a per-job CPU reservation larger than every node of the cluster."""
    import ray

    if num_cpus is None:
        return
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    if float(num_cpus) > largest:
        raise ConfigError(
            f"hydra.launcher.ray.remote.num_cpus={num_cpus}, but the largest node of the Ray cluster has {largest:g} "
            "CPUs: no job could ever start (set it to your nodes' core count or less)"
        )


class RayLauncher(PluginRayLauncher):
    """The plugin's launcher, collecting every job's result (see the module docstring)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import ray
        from hydra_plugins.hydra_ray_launcher._launcher_util import launch_job_on_ray

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        init = OmegaConf.to_container(self.ray_cfg.init, resolve=True) or {}
        started = not ray.is_initialized()
        if started:
            check_reachable(init.get("address"))
            try:
                ray.init(**init)
            except ConnectionError as e:  # e.g. address=auto and no cluster to join
                raise ConfigError(f"hydra.launcher.ray.init.address={init.get('address')}: {e}") from None
        try:
            check_cpus(OmegaConf.select(self.ray_cfg, "remote.num_cpus"))
            refs: dict[Any, int] = {}
            results: list[JobReturn | None] = [None] * len(job_overrides)
            for i, overrides in enumerate(job_overrides):
                idx = initial_job_idx + i
                log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
                try:
                    sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                except Exception as e:  # a job whose overrides do not compose fails alone
                    results[i] = failed_return(overrides, e)
                    continue
                with open_dict(sweep_config):
                    sweep_config.hydra.job.id = f"job_id_for_{idx}"
                    sweep_config.hydra.job.num = idx
                ref = launch_job_on_ray(
                    self.hydra_context, self.ray_cfg.remote, sweep_config, self.task_function, Singleton.get_state()
                )
                refs[ref] = i
            self._gather(refs, results, job_overrides)
            return results  # type: ignore[return-value]
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _gather(refs: dict[Any, int], results: list[JobReturn | None], job_overrides: Sequence[Sequence[str]]) -> None:
        import ray
        from ray.exceptions import RayError

        pending = dict(refs)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        results[i] = ray.get(ref)
                    except RayError as e:  # the worker died or the task could not run
                        results[i] = failed_return(job_overrides[i], lost(e))
                    log.info(f"finished {len(refs) - len(pending)} of {len(refs)}: {' '.join(job_overrides[i])}")
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
