"""Hydra's joblib launcher, for job lists (:mod:`sigebench.launch_jobs`): results are taken as each job finishes, so
when a worker process dies (joblib then stops the whole pool) the jobs that had finished keep their results and only
the killed job and those that had not finished are failed results, each naming itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra_plugins.hydra_joblib_launcher import _core
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as PluginJoblibLauncher

from sigebench.launch_jobs import failed_return, lost

log = logging.getLogger(__name__)


def _indexed(i: int, *args: Any) -> tuple[int, JobReturn]:
    return i, _core.execute_job(*args)


class JoblibLauncher(PluginJoblibLauncher):
    """The plugin's launcher, collecting the result of every job that finished (see the module docstring)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from joblib import Parallel, delayed

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        options = {**self.joblib, "backend": "loky", "return_as": "generator_unordered"}  # loky: as the plugin
        _core.process_joblib_cfg(options)
        state = Singleton.get_state()
        results: list[JobReturn | None] = [None] * len(job_overrides)
        calls = (
            delayed(_indexed)(i, initial_job_idx + i, o, self.hydra_context, self.config, self.task_function, state)
            for i, o in enumerate(job_overrides)
        )
        try:
            for i, ret in Parallel(**options)(calls):
                results[i] = ret
                log.info(f"finished {sum(r is not None for r in results)} of {len(results)}: {' '.join(ret.overrides)}")
        except Exception as e:  # a worker died: joblib stops the pool
            results = [r if r is not None else failed_return(o, lost(e)) for r, o in zip(results, job_overrides)]
        return results  # type: ignore[return-value]
