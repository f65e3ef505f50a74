"""Hydra's submitit launchers (SLURM, and its local executor), for job lists (:mod:`sigebench.launch_jobs`): the
jobs are submitted as the plugin submits them (one job array), but every job is waited for; one that died (killed,
timed out, out of memory, node lost) is a failed result naming it instead of ending the wait while the rest run on
unwatched. Ctrl-C cancels the jobs that are still queued or running.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as plugin
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

from sigebench.config import ConfigError
from sigebench.launch_jobs import failed_return, lost

log = logging.getLogger(__name__)


class _Gathering(plugin.BaseSubmititLauncher):
    def _executor(self) -> Any:
        """The executor the plugin builds from ``hydra.launcher.*`` (folder and timeouts, then job parameters)."""
        import submitit

        params = dict(self.params)
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
        try:
            executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        except RuntimeError as e:  # e.g. no srun: not on a SLURM cluster
            raise ConfigError(f"hydra/launcher with submitit's {self._EXECUTOR} executor: {e}") from None
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v for k, v in params.items()})
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        assert self.config is not None and len(job_overrides) > 0
        executor = self._executor()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        params = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*params))
        results: list[JobReturn] = []
        try:
            for job, overrides in zip(jobs, job_overrides):
                try:
                    results.append(job.results()[0])
                except (UncompletedJobError, FailedJobError) as e:  # the job's process died
                    results.append(failed_return(overrides, lost(e, f"submitit job {job.job_id}: ")))
                log.info(f"finished {len(results)} of {len(jobs)}: {' '.join(overrides)}")
        except KeyboardInterrupt:
            for job in jobs[len(results) :]:
                job.cancel(check=False)
            raise
        return results


class SlurmLauncher(_Gathering, plugin.SlurmLauncher):
    """The plugin's SLURM launcher, waiting for every job."""


class LocalLauncher(_Gathering, plugin.LocalLauncher):
    """The plugin's local launcher (the SLURM launcher's local executor), waiting for every job."""
