"""Loading the original released checkpoints (and any state dict in their layouts) into our UNets.

Released files (``datasets/diffusion_checkpoints.yaml``): ``church256-ddpm-unet.pth`` (unfused DDPM),
``church256-ddpm-fused_unet.pth`` (fused DDPM) and ``church128-pd-unet.pth`` (PD-128). Each holds
``{"model": state_dict, ["ema": shadow dict of the parameters]}``; ermongroup/ddim's own
``[model, optimizer, epoch, step, ema]`` lists and bare state dicts (with or without a DataParallel
``module.`` prefix) load too.

Layouts mapped onto :class:`~diffusion.models.ddpm.DDPMUNet` (which keeps a ``temb_proj`` per ResBlock
and ``q``, ``k``, ``v`` convs per attention block, the engine's AttnBlock):

* unfused: the model's own layout;
* fused: ``...attn.{j}.qkv`` is split (in that order) into ``q``, ``k``, ``v``, and ``temb.dense.2`` (all
  ResBlocks' time projections stacked in forward order: down levels, ``mid.block_1``, ``mid.block_2``, up
  levels from the lowest resolution) is split into the blocks' ``temb_proj``.

The PD checkpoint has the model's layout but for the fused ``qkv`` convs, which are split the same way.
Anything that does not fit raises :class:`CheckpointError` naming the missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model (wrong file, truncated, other architecture)."""


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` on the CPU, restricted to tensors and plain containers."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with foreign classes, not a checkpoint at all
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(e).__name__}: {str(e)[:200]}); is the file complete? "
            "Compare its md5 with datasets/diffusion_checkpoints.yaml"
        ) from e


def extract_state_dict(obj: Any, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The model weights of a loaded checkpoint (EMA parameters over the raw ones when present and asked)."""
    ema = None
    if isinstance(obj, list | tuple):  # ermongroup/ddim: [model, optimizer, epoch, step, (ema)]
        if not obj or not isinstance(obj[0], Mapping):
            raise CheckpointError("a list checkpoint must start with the model's state dict")
        model, ema = obj[0], (obj[4] if len(obj) > 4 and isinstance(obj[4], Mapping) else None)
    elif isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        model, ema = obj["model"], obj.get("ema")
    elif isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        model = obj["state_dict"]
    elif isinstance(obj, Mapping):
        model = obj
    else:
        raise CheckpointError(f"unrecognised checkpoint object of type {type(obj).__name__}")
    state = _strip_prefix(dict(model))
    if use_ema and ema:
        ema = _strip_prefix(dict(ema))
        unknown = sorted(set(ema) - set(state))
        if unknown:
            raise CheckpointError(f"the EMA weights name parameters the model weights lack: {_head(unknown)}")
        state.update(ema)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"non-tensor entries in the state dict: {_head(bad)}")
    return state


def _strip_prefix(sd: dict[str, Any]) -> dict[str, Any]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _head(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


def check_and_load(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` strictly, raising :class:`CheckpointError` with the keys that do not match."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_head(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_head(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {_head(shapes, 5)}")
        raise CheckpointError(
            f"{what} does not fit {type(model).__name__}({getattr(model, 'config', '')}): " + "; ".join(parts)
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def ddpm_temb_blocks(model: nn.Module) -> list[str]:
    """Names of the DDPM ResBlocks in the forward order of the fused ``temb.dense.2`` projection."""
    names = []
    for i, down in enumerate(model.down):
        names += [f"down.{i}.block.{j}" for j in range(len(down.block))]
    names += ["mid.block_1", "mid.block_2"]
    for i in reversed(range(len(model.up))):
        names += [f"up.{i}.block.{j}" for j in range(len(model.up[i].block))]
    return names


def ddpm_layout(state: Mapping[str, torch.Tensor]) -> str:
    """``"fused"`` or ``"unfused"`` (the model's own layout) from the keys of a DDPM state dict."""
    return "fused" if "temb.dense.2.weight" in state else "unfused"


def split_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fused ``<attn>.qkv`` convs (q, k, v stacked on the output channels) as ``<attn>.{q,k,v}`` convs."""
    for key in [k for k in state if k.endswith(".qkv.weight") or k.endswith(".qkv.bias")]:
        p, kind = key.rsplit(".qkv.", 1)
        t = state.pop(key)
        if t.shape[0] % 3:
            raise CheckpointError(f"{key} has {t.shape[0]} output channels, not a multiple of 3 (q, k, v)")
        for n, part in zip("qkv", t.chunk(3, dim=0)):
            state[f"{p}.{n}.{kind}"] = part
    return state


def convert_ddpm_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map an unfused or fused DDPM state dict onto the keys of ``model`` (a DDPMUNet)."""
    layout = ddpm_layout(state)
    state = split_qkv(dict(state))
    if layout == "fused":
        w, b = state.pop("temb.dense.2.weight"), state.pop("temb.dense.2.bias", None)
        if b is None:
            raise CheckpointError("fused checkpoint has temb.dense.2.weight but no temb.dense.2.bias")
        names = ddpm_temb_blocks(model)
        sizes = [model.get_submodule(n).out_channels for n in names]
        if w.shape[0] != sum(sizes) or b.shape[0] != sum(sizes):
            raise CheckpointError(
                f"temb.dense.2 projects to {w.shape[0]} channels, but the model's {len(names)} ResBlocks need "
                f"{sum(sizes)} (sum of their output channels); the checkpoint is for another configuration"
            )
        offset = 0
        for n, c in zip(names, sizes):
            state[f"{n}.temb_proj.weight"] = w[offset : offset + c]
            state[f"{n}.temb_proj.bias"] = b[offset : offset + c]
            offset += c
    return state


def export_ddpm_state_dict(model: nn.Module, layout: str = "fused") -> dict[str, torch.Tensor]:
    """The model's weights in an original layout (``"fused"`` or ``"unfused"``), e.g. to save a checkpoint."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if layout == "fused":
        for key in [k for k in state if k.endswith(".q.weight") or k.endswith(".q.bias")]:
            p, kind = key.rsplit(".q.", 1)
            state[f"{p}.qkv.{kind}"] = torch.cat([state.pop(f"{p}.{n}.{kind}") for n in "qkv"], dim=0)
        names = ddpm_temb_blocks(model)
        for kind in ("weight", "bias"):
            state[f"temb.dense.2.{kind}"] = torch.cat([state.pop(f"{n}.temb_proj.{kind}") for n in names], dim=0)
    elif layout != "unfused":
        raise ValueError(f"layout must be 'fused' or 'unfused', got {layout!r}")
    return state


def load_ddpm(model: nn.Module, source: str | os.PathLike[str] | Mapping, use_ema: bool = True) -> str:
    """Load a DDPM checkpoint (path or loaded object) of either released layout; returns the layout."""
    obj = read_checkpoint(source) if isinstance(source, str | os.PathLike) else source
    state = extract_state_dict(obj, use_ema)
    layout = ddpm_layout(state)
    what = f"DDPM checkpoint {source if isinstance(source, str | os.PathLike) else '(in memory)'} ({layout} layout)"
    check_and_load(model, convert_ddpm_state_dict(state, model), what)
    return layout


def load_pd(model: nn.Module, source: str | os.PathLike[str] | Mapping, use_ema: bool = False) -> str:
    """Load a Progressive Distillation checkpoint (path or loaded object)."""
    obj = read_checkpoint(source) if isinstance(source, str | os.PathLike) else source
    state = split_qkv(extract_state_dict(obj, use_ema))
    what = f"PD checkpoint {source if isinstance(source, str | os.PathLike) else '(in memory)'}"
    check_and_load(model, state, what)
    return "pd"
