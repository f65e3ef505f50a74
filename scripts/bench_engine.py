#!/usr/bin/env python
"""Thin CLI for :mod:`sigebench.engine_bench` (see its docstring, or `--help`)."""

import sys

from sigebench.engine_bench import main

if __name__ == "__main__":
    sys.exit(main())
