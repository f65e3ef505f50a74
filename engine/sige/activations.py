"""Activations that Gather and ScatterGather can fuse, by name (identical in every backend)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LEAKY_RELU_SLOPE = 0.2

ACTIVATIONS = ("identity", "swish", "silu", "relu", "leaky_relu", "gelu", "tanh", "sigmoid")


def check_activation(name: str) -> str:
    """Return ``name`` if it is a supported activation, else raise a ValueError listing them."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; supported: {', '.join(ACTIVATIONS)}")
    return name


def activation(x: torch.Tensor, name: str) -> torch.Tensor:
    """Apply the named activation. ``swish`` and ``silu`` are the same function (x * sigmoid(x))."""
    if name == "identity":
        return x
    if name in ("swish", "silu"):
        return x * torch.sigmoid(x)
    if name == "relu":
        return torch.relu(x)
    if name == "leaky_relu":
        return F.leaky_relu(x, LEAKY_RELU_SLOPE)
    if name == "gelu":
        return F.gelu(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(f"unknown activation {name!r}; supported: {', '.join(ACTIVATIONS)}")
