"""Mode-aware modules with the original engine's public API."""

from sige.nn.base import SIGEConv2d, SIGEModel, SIGEModule, SIGEModuleWrapper
from sige.nn.gather import Gather
from sige.nn.scatter import Scatter, ScatterWithBlockResidual
from sige.nn.scatter_gather import ScatterGather

__all__ = [
    "Gather",
    "SIGEConv2d",
    "SIGEModel",
    "SIGEModule",
    "SIGEModuleWrapper",
    "Scatter",
    "ScatterGather",
    "ScatterWithBlockResidual",
]
