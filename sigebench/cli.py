"""The Hydra application behind ``scripts/run.py``: compose the config, run ``task._target_`` with it.

Errors of the configuration (:class:`~sigebench.config.ConfigError`, a missing edit file, a checkpoint that is
not there) end the run with one line naming the setting, exit status 2, and no row written; an interrupted run
says what was finished.
"""

from __future__ import annotations

import sys

import hydra
from hydra.utils import get_method
from omegaconf import DictConfig

import sigebench.config  # noqa: F401  (registers the schema)
from sigebench.jobs import CONFIGS


@hydra.main(version_base="1.3", config_path=str(CONFIGS), config_name="config")
def _app(cfg: DictConfig) -> None:
    from sigebench.errors import USER_ERRORS

    try:
        get_method(cfg.task._target_)(cfg)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: rows of finished runs are stored; run the command again to resume", file=sys.stderr)
        sys.exit(130)


def main() -> None:
    _app()
