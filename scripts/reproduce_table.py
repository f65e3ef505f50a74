#!/usr/bin/env python
"""Thin CLI for :mod:`sigebench.reproduce` (see its docstring, or `--help`)."""

import sys

from sigebench.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
