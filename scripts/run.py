#!/usr/bin/env python
"""Benchmark entry point (Hydra): ``python scripts/run.py task=efficiency model=<model> edit=<case> ...``.

Sweeps: ``python scripts/run.py -m model=a,b edit=synthetic edit.area=0.005,0.012`` (basic launcher),
``hydra/launcher=joblib_local threads=1`` for local parallel runs. See README.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import call
from omegaconf import DictConfig

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="config")
def main(cfg: DictConfig) -> None:
    call({"_target_": cfg.task._target_}, cfg)


if __name__ == "__main__":
    main()
