"""SIGE: spatially incremental generative engine (sparse inference for image edits)."""

from sige import mask, utils
from sige.__version__ import __version__

__all__ = ["__version__", "mask", "utils"]
