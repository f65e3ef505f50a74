#!/usr/bin/env python
"""Benchmark entry point (Hydra): ``python scripts/run.py task=efficiency model=<model> edit=<case> ...``.

Sweeps: ``python scripts/run.py -m model=a,b edit=synthetic edit.area=0.005,0.012`` (one job after another), or
through a launcher: ``-m hydra/launcher=joblib_local | ray_local | ray_cluster | slurm | submitit_local``
(configs/hydra/launcher/; each job runs on the cores its launcher gives it). See README, "Running on a cluster".
"""

from sigebench.cli import main

if __name__ == "__main__":
    main()
