#!/usr/bin/env python
"""Benchmark entry point (Hydra): ``python scripts/run.py task=efficiency model=<model> edit=<case> ...``.

Sweeps: ``python scripts/run.py -m model=a,b edit=synthetic edit.area=0.005,0.012`` (basic launcher),
``hydra/launcher=joblib_local threads=1`` for local parallel runs. See README.
"""

from sigebench.cli import main

if __name__ == "__main__":
    main()
