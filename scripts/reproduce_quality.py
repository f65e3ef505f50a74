#!/usr/bin/env python
"""Thin CLI for :mod:`sigebench.reproduce_quality` (see its docstring, or `--help`)."""

import sys

from sigebench.reproduce_quality import main

if __name__ == "__main__":
    sys.exit(main())
