"""MAC counting with torchprofile, in the mode that shows the work actually done.

For a SIGEModel in ``sparse`` mode the custom gather/scatter ops are invisible to a JIT trace, so
the model is switched to ``profile`` mode for the count (shape-correct placeholders; the convs,
matmuls and element-wise multiplies run on the reduced tile batches) and switched back after.
Scatter and add count 0, exactly as in the original engine's published figures.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from sige.nn.base import SIGEModel

# Ops whose MACs the profiler of the original work did not see (fused attention kernels); counting them
# is right, but some published figures (the SIGE paper's XL latent UNet) leave them out.
FUSED_ATTENTION_OPS = ("aten::scaled_dot_product_attention",)


def _per_op_macs(model: nn.Module, inputs: Any, kwargs: dict | None) -> list[tuple[str, int]]:
    """``(operator, MACs)`` of every node torchprofile counts in one trace of ``model(*inputs, **kwargs)``."""
    from torchprofile import profile_macs as _tp_profile_macs

    args = inputs if isinstance(inputs, tuple) else (inputs,)
    if kwargs:
        model = _KwargsWrapper(model, kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings and "no handler" notes for zero-cost ops
        per_node = _tp_profile_macs(model, args, reduction=None)
    return [(node.operator, int(v)) for node, v in per_node.items()]


def profile_macs(model: nn.Module, inputs: Any, exclude_ops: Sequence[str] = (), kwargs: dict | None = None) -> int:
    """torchprofile MAC count of ``model(*inputs, **kwargs)``; ops named in ``exclude_ops`` count 0."""
    return sum(v for op, v in _per_op_macs(model, inputs, kwargs) if op not in exclude_ops)


class _KwargsWrapper(nn.Module):
    def __init__(self, model: nn.Module, kwargs: dict):
        super().__init__()
        self.model = model
        self.kwargs = kwargs

    def forward(self, *args: Any) -> Any:
        return self.model(*args, **self.kwargs)


@contextmanager
def _counting_mode(model: nn.Module) -> Iterator[None]:
    """A SIGEModel in sparse mode is traced in profile mode (what the sparse pass really computes: the
    custom gather/scatter ops are invisible to a trace) and put back in sparse mode after."""
    sparse = isinstance(model, SIGEModel) and model.mode == "sparse"
    if sparse:
        model.set_mode("profile")
    try:
        yield
    finally:
        if sparse:
            model.set_mode("sparse")


@torch.no_grad()
def macs(model: nn.Module, inputs: Any, exclude_ops: Sequence[str] = (), kwargs: dict | None = None) -> int:
    """MACs of one forward of ``model`` as it is configured now (sparse mode: the sparse pass's work; full
    mode: the dense count)."""
    with _counting_mode(model):
        return profile_macs(model, inputs, exclude_ops, kwargs)


@torch.no_grad()
def macs_by_convention(model: nn.Module, inputs: Any, kwargs: dict | None = None) -> tuple[int, int]:
    """``(paper convention, true count)`` of one forward, from one trace (the mode as in :func:`macs`).

    The paper convention leaves out :data:`FUSED_ATTENTION_OPS`, which the profiler of the original work
    did not see; the true count includes them. Models without fused attention get two equal counts.
    """
    with _counting_mode(model):
        per_op = _per_op_macs(model, inputs, kwargs)
    total = sum(v for _, v in per_op)
    return total - sum(v for op, v in per_op if op in FUSED_ATTENTION_OPS), total
