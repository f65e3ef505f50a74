#!/usr/bin/env python
"""Thin CLI for :mod:`sigebench.figures` (see its docstring, or `--help`)."""

import sys

from sigebench.figures import main

if __name__ == "__main__":
    sys.exit(main())
