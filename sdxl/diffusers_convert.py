"""Diffusers models as this project's sparse models, sharing their weights.

:func:`from_diffusers` takes a diffusers ``UNet2DConditionModel`` or ``AutoencoderKL`` (SD 1.x / 2.x, SDXL base,
refiner, turbo, or any config :mod:`sdxl.diffusers_arch` accepts) and returns this project's
:class:`~sdxl.unet.UNet` / :class:`~sdxl.vae.AutoencoderKL`, built from the diffusers config on the meta device
and given diffusers' own tensors (``load_state_dict(assign=True)``; a linear weight becomes a view of the 1x1 conv
shape): no second copy of the weights exists, and the result runs dense, sparse and profile exactly as the
project's sd14 / sdxl_* models do (the same classes). Pass ``dtype`` to convert instead (a copy; e.g. the SDXL VAE
in float32 under a float16 pipeline). Convert after moving the diffusers model to its device and dtype: ``.to()``
gives it new tensors, which the converted model would not see.

Only config field names and state-dict key names of diffusers are relied on (stable across releases), not its
module internals. Tested with diffusers 0.35.2 and 0.42.1 (pyproject.toml's ``sd`` extra pins the range).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sige.nn.blocks import timestep_embedding

from .checkpoint import CheckpointError, _convert
from .diffusers_arch import unet_config_from_diffusers, vae_config_from_diffusers
from .diffusers_keys import unet_key_map, vae_key_map
from .unet import UNet
from .vae import AutoencoderKL

UNET_CLASS, VAE_CLASS = "UNet2DConditionModel", "AutoencoderKL"


def _is(module: Any, name: str) -> bool:
    """Whether ``module`` is (a subclass of) the diffusers class ``name`` (no diffusers import needed)."""
    return any(c.__name__ == name and c.__module__.startswith("diffusers") for c in type(module).__mro__)


def assign_weights(
    model: nn.Module,
    source: Mapping[str, torch.Tensor],
    key_map: Mapping[str, str],
    what: str,
    dtype: torch.dtype | None = None,
) -> None:
    """Give ``model`` (built on the meta device) the tensors of ``source`` (diffusers keys) through ``key_map``
    (ours -> diffusers); strict both ways, the same errors as the checkpoint loader."""
    own = model.state_dict(keep_vars=True)
    missing = sorted(theirs for theirs in key_map.values() if theirs not in source)
    unexpected = sorted(set(source) - set(key_map.values()))
    if missing or unexpected:
        hint = ""
        if any("lora" in k for k in unexpected):
            hint = " (LoRA adapters: fuse them into the weights and unload them first, e.g. pipe.fuse_lora())"
        elif any("to_qkv" in k or "to_kv" in k for k in unexpected):
            hint = " (fused QKV projections: call unfuse_qkv_projections() first)"
        raise CheckpointError(
            f"{what} does not match this project's model: {len(missing)} missing key(s) {missing[:5]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:5]}{hint}"
        )
    state = {}
    with torch.no_grad():
        for ours, theirs in key_map.items():
            t = source[theirs].detach()
            state[ours] = _convert(t, own[ours], theirs, dtype or t.dtype)  # a view unless dtype changes
    model.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{what}: no weights were given for {left[:5]}")


def unet_from_diffusers(unet: nn.Module, dtype: torch.dtype | None = None, **engine: Any) -> UNet:
    """Our sparse :class:`UNet` of a diffusers ``UNet2DConditionModel``, sharing its weights (``engine``: see
    :data:`sdxl.diffusers_arch.UNET_ENGINE_FIELDS`; defaults as the project's sd14 / sdxl configs)."""
    if not _is(unet, UNET_CLASS):
        raise TypeError(f"unet_from_diffusers takes a diffusers {UNET_CLASS}, got {type(unet).__name__}")
    config = dict(unet.config)
    with torch.device("meta"):
        model = UNet(unet_config_from_diffusers(config, **engine))
    assign_weights(model, unet.state_dict(), unet_key_map(model), f"the diffusers {UNET_CLASS}", dtype)
    model.diffusers_config = config
    return model.eval()


def vae_from_diffusers(vae: nn.Module, dtype: torch.dtype | None = None, **engine: Any) -> AutoencoderKL:
    """Our sparse :class:`AutoencoderKL` (encoder and decoder SIGEModels) of a diffusers ``AutoencoderKL``, sharing
    its weights (``engine``: see :data:`sdxl.diffusers_arch.VAE_ENGINE_FIELDS`)."""
    if not _is(vae, VAE_CLASS):
        raise TypeError(f"vae_from_diffusers takes a diffusers {VAE_CLASS}, got {type(vae).__name__}")
    config = dict(vae.config)
    with torch.device("meta"):
        model = AutoencoderKL(vae_config_from_diffusers(config, **engine))
    assign_weights(model, vae.state_dict(), vae_key_map(model), f"the diffusers {VAE_CLASS}", dtype)
    model.diffusers_config = config
    return model.eval()


def from_diffusers(module: nn.Module, dtype: torch.dtype | None = None, **engine: Any) -> UNet | AutoencoderKL:
    """:func:`unet_from_diffusers` or :func:`vae_from_diffusers`, by the module's class."""
    if _is(module, UNET_CLASS):
        return unet_from_diffusers(module, dtype, **engine)
    if _is(module, VAE_CLASS):
        return vae_from_diffusers(module, dtype, **engine)
    raise TypeError(f"from_diffusers takes a diffusers {UNET_CLASS} or {VAE_CLASS}, got {type(module).__name__}")


def added_cond_vector(text_embeds: torch.Tensor, time_ids: torch.Tensor, time_embed_dim: int) -> torch.Tensor:
    """SDXL's added conditioning ``y = [pooled text | sinusoid(time id) per id]`` (what diffusers computes from
    ``added_cond_kwargs={"text_embeds", "time_ids"}`` before ``add_embedding``): ``[B, P + n * time_embed_dim]``."""
    if text_embeds.dim() != 2 or time_ids.dim() != 2 or text_embeds.shape[0] != time_ids.shape[0]:
        raise ValueError(
            f"text_embeds [B, P] and time_ids [B, n] needed, got {tuple(text_embeds.shape)}, {tuple(time_ids.shape)}"
        )
    B = int(time_ids.shape[0])
    emb = timestep_embedding(time_ids.flatten(), time_embed_dim, True, 0.0).reshape(B, -1)
    return torch.cat([text_embeds, emb.to(text_embeds.dtype)], dim=-1)


def diffusers_model(config: Mapping[str, Any], dtype: torch.dtype = torch.float32) -> nn.Module:
    """A diffusers ``UNet2DConditionModel`` / ``AutoencoderKL`` with random weights from ``config`` (its
    ``_class_name`` says which; seed with ``torch.manual_seed`` first)."""
    import diffusers

    name = config.get("_class_name")
    if name not in (UNET_CLASS, VAE_CLASS):
        raise ValueError(f"diffusers config of class {name!r}; expected {UNET_CLASS} or {VAE_CLASS}")
    return getattr(diffusers, name).from_config(dict(config)).to(dtype).eval()


def dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """The ``from_pretrained`` argument for a dtype: ``dtype`` where diffusers has it (newer releases deprecate
    ``torch_dtype``), ``torch_dtype`` in the releases before."""
    try:
        from diffusers.utils import deprecation_utils

        newer = hasattr(deprecation_utils, "_resolve_dtype")
    except ImportError:
        newer = False
    return {"dtype": dtype} if newer else {"torch_dtype": dtype}
