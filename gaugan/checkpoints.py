"""Loading the released GauGAN / GAN Compression generator checkpoints by their real key layouts.

The releases (``https://www.cs.cmu.edu/~sige/resources/models/gaugan/``, manifest
``datasets/gaugan_checkpoints.yaml``) are raw state dicts in two layouts:

* **fused** (``fused_spade.pth``, ``fused_sub_mobile_spade-<config>.pth``): the layout of
  :class:`gaugan.models.SPADEGenerator` itself: one block-level ``<block>.mlp_shared.0`` (the shared
  convs of norm_0, norm_1 [, norm_s] concatenated) and, for GauGAN, ``<block>.norm_<k>.mlp_gamma_beta``
  (gamma and beta concatenated);
* **unfused** (``spade.pth``, ``sub_mobile_spade-<config>.pth``): each SPADE norm has its own
  ``norm_<k>.mlp_shared.0`` and, for GauGAN, separate ``norm_<k>.mlp_gamma`` / ``norm_<k>.mlp_beta``.

Both may carry spectral-norm parametrisations (``weight_orig``/``weight_u``/``weight_v``; the
eval-mode weight ``weight_orig / sigma`` is used) and a ``module.`` prefix. GAN Compression's
checkpoints keep the param-free BatchNorm running statistics at the supernet's width: like the original
loader, 1-D ``param_free_norm`` tensors longer than the model's are truncated to its channels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from gaugan.models import SPADEGenerator


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model (the message says what and what to do)."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A raw state dict from ``path`` (unwrapping ``{"state_dict": ...}``-style containers)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any unpickling problem the same way
        raise CheckpointError(f"could not read {path} as a PyTorch state dict: {type(e).__name__}: {e}") from e
    for key in ("state_dict", "model", "netG", "generator"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return dict(obj)


def _strip_prefix(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(sd)
    for prefix in ("module.", "netG.", "generator."):
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def _remove_spectral_norm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace ``weight_orig``/``weight_u``/``weight_v`` by the eval-mode weight ``weight_orig / sigma``."""
    for key in [k for k in sd if k.endswith(".weight_orig")]:
        base = key[: -len("weight_orig")]
        w, u, v = sd.pop(key), sd.pop(base + "weight_u", None), sd.pop(base + "weight_v", None)
        if u is None or v is None:
            raise CheckpointError(f"{key} has no matching weight_u / weight_v (incomplete spectral norm)")
        sigma = torch.dot(u.double(), torch.mv(w.reshape(w.shape[0], -1).double(), v.double()))
        sd[base + "weight"] = (w.double() / sigma).to(w.dtype)
    return sd


def convert_state_dict(sd: Mapping[str, torch.Tensor], model: SPADEGenerator) -> dict[str, torch.Tensor]:
    """Any released layout -> the model's (fused) layout; unknown keys pass through unchanged."""
    out = _remove_spectral_norm(_strip_prefix(sd))
    for block in model.block_names:
        norms = ["0", "1"] + (["s"] if getattr(model, block).learned_shortcut else [])
        for part in ("weight", "bias"):
            keys = [f"{block}.norm_{k}.mlp_shared.0.{part}" for k in norms]
            present = [k for k in keys if k in out]
            if present and len(present) != len(keys):
                raise CheckpointError(f"{block}: the unfused checkpoint has {present} but not all of {keys}")
            if present:
                out[f"{block}.mlp_shared.0.{part}"] = torch.cat([out.pop(k) for k in keys], dim=0)
            for k in norms:
                g, b = f"{block}.norm_{k}.mlp_gamma.{part}", f"{block}.norm_{k}.mlp_beta.{part}"
                if g in out and b in out:  # GauGAN's separate 3x3 gamma / beta convs
                    out[f"{block}.norm_{k}.mlp_gamma_beta.{part}"] = torch.cat([out.pop(g), out.pop(b)], dim=0)
    return out


def load_state_dict(model: SPADEGenerator, sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load a released state dict (any layout) into ``model``; raises :class:`CheckpointError` with the
    mismatching keys when it does not fit."""
    converted = convert_state_dict(sd, model)
    target = model.state_dict()
    missing = [k for k in target if k not in converted and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in converted if k not in target]
    problems = []
    final: dict[str, torch.Tensor] = {}
    for key, ref in target.items():
        if key not in converted:
            final[key] = ref  # only num_batches_tracked (older checkpoints have none)
            continue
        value = converted[key]
        if value.shape != ref.shape:
            if "param_free_norm" in key and value.dim() == ref.dim() == 1 and value.shape[0] >= ref.shape[0]:
                value = value[: ref.shape[0]]  # supernet-width running statistics (GAN Compression)
            else:
                problems.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(ref.shape)}")
                continue
        final[key] = value.to(ref.dtype)
    if missing or unexpected or problems:

        def some(xs: list[str]) -> str:
            return ", ".join(xs[:6]) + (f" ... ({len(xs)} in all)" if len(xs) > 6 else "")

        parts = [f"{source} does not fit this {'GAN Compression' if model.spec.separable else 'GauGAN'} "
                 f"generator (blocks {', '.join(model.block_names)})"]  # fmt: skip
        if missing:
            parts.append(f"missing: {some(missing)}")
        if unexpected:
            parts.append(f"unexpected: {some(unexpected)}")
        if problems:
            parts.append(f"shape mismatch: {some(problems)}")
        parts.append(
            "check the model config (architecture, ngf, config_str, use_instance, num_upsampling_layers) "
            "against the checkpoint"
        )
        raise CheckpointError("; ".join(parts))
    model.load_state_dict(final)
    for m in model.modules():  # cached BatchNorm scale/shift must follow the new running statistics
        if hasattr(m, "_scale_shift"):
            m._scale_shift = None


def load_checkpoint(model: SPADEGenerator, path: str | os.PathLike) -> SPADEGenerator:
    """Load ``path`` (a released or our own state dict) into ``model``; returns the model."""
    load_state_dict(model, read_state_dict(path), source=str(path))
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
