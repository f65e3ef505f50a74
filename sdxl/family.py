"""The latent family (sd14, sdxl_base, sdxl_refiner, sdxl_turbo, and the same models built through diffusers:
``*_diffusers``; components unet, encoder, decoder) behind the harness: the efficiency case of one component and
``task=generate`` (:mod:`sdxl.generate`). ``weights=`` may also name a diffusers folder.

One component is built at a time (SDXL's UNet alone is ~10 GiB in float32). Inputs follow the published
measurements: 1024x512 images, 64x128 latents, the UNet with its classifier-free-guidance batch of 2.
With random weights (MACs and latency do not depend on them) the component inputs are seeded: latents
``x0`` and ``x1 = x0 + noise`` inside the edited region; images are the real edit images.

Columns beyond the benchmark contract:

* ``macs``: the paper's counting convention (torchprofile without fused scaled-dot-product attention,
  which the profiler of the original work did not see; SD 1.4 writes every attention as bmm, so nothing
  is left out there); ``macs_with_fused_attention``: the true count, fused attention included;
* ``psnr_vs_dense_db``: PSNR of the sparse output against the dense output for the same edited input
  (range = the dense output's max - min); random-weight fidelity of one UNet step / one VAE pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sige.nn import SIGEModel
from sige.nn.attention import set_kv_mode
from sigebench.family import Case, Display
from sigebench.weights import resolve_weights

from .config import unet_config, vae_config
from .edits import EditCase, complete_pyramid, load_case

COMPONENTS = ("unet", "encoder", "decoder")
MODEL_KEYS = {
    "name", "family", "image_size", "latent_factor", "latent_channels", "cfg_batch", "context_tokens", "timestep",
    "checkpoint", "unet", "vae", "scale_factor", "text", "conditioning", "sampler", "init_seed", "diffusers",
}  # fmt: skip


def _region_at(region: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A pixel region reduced to ``size``: a cell is set when any of its pixels is."""
    H, W = region.shape
    fh, fw = H // size[0], W // size[1]
    return F.max_pool2d(region.float()[None, None], (fh, fw))[0, 0] > 0.5


def component_inputs(
    component: str, case: EditCase, model_cfg: Mapping[str, Any], dtype: torch.dtype, device: str, seed: int = 0
) -> tuple[tuple, tuple, dict]:
    """``(original args, edited args, masks)`` of one component forward for an edit case (random-weight inputs)."""
    g = torch.Generator().manual_seed(seed)
    H, W = case.size
    f = int(model_cfg.get("latent_factor", 8))
    h, w = H // f, W // f
    zc = int(model_cfg.get("latent_channels", 4))
    if component == "encoder":
        return (
            (case.original.to(device, dtype),),
            (case.edited.to(device, dtype),),
            complete_pyramid(case.masks, (h, w)),
        )
    # the latents differ inside the region the pipeline treats as edited at the latent resolution
    latent_region = case.masks[(h, w)] if (h, w) in case.masks else _region_at(case.region, (h, w))
    z0 = torch.randn(1, zc, h, w, generator=g)
    z1 = z0 + torch.randn(1, zc, h, w, generator=g) * latent_region
    if component == "decoder":
        return (z0.to(device, dtype),), (z1.to(device, dtype),), complete_pyramid(case.decoder_masks, (h, w))
    unet = model_cfg["unet"]
    batch = int(model_cfg.get("cfg_batch", 2))
    ctx = torch.randn(batch, int(model_cfg.get("context_tokens", 77)), int(unet["context_dim"]), generator=g)
    t = torch.full((batch,), float(model_cfg.get("timestep", 500)))
    extra = ()
    if unet.get("adm_in_channels"):
        extra = (torch.randn(batch, int(unet["adm_in_channels"]), generator=g).to(device, dtype),)
    common = (t.to(device), ctx.to(device, dtype), *extra)
    x0, x1 = z0.expand(batch, -1, -1, -1), z1.expand(batch, -1, -1, -1)  # the CFG pair shares its latent
    f = 2 ** (len(unet["channel_mult"]) - 1)
    masks = complete_pyramid(case.masks, (h // f, w // f))
    return (x0.to(device, dtype), *common), (x1.to(device, dtype), *common), masks


def build_component(model_cfg: Mapping[str, Any], component: str, weights: str | None, dtype: torch.dtype, device: str):
    """The requested component only (random weights, or loaded from the checkpoint file or diffusers folder
    ``weights`` names), and the ``weights`` label of its rows. Models with ``diffusers:`` in their config are
    diffusers models converted to ours (:mod:`sdxl.diffusers_models`)."""
    from .diffusers_folder import is_diffusers_folder, load_diffusers_weights
    from .unet import UNet
    from .vae import Decoder, Encoder

    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; the SD/SDXL models have {', '.join(COMPONENTS)}")
    folder = Path(str(weights)) if is_diffusers_folder(weights) else None
    path = None if folder else resolve_weights(weights, model_cfg.get("checkpoint"), model_cfg["name"])
    torch.manual_seed(int(model_cfg.get("init_seed", 0)))
    if model_cfg.get("diffusers"):
        from .diffusers_models import build_diffusers_component

        model = build_diffusers_component(model_cfg, component, folder, dtype)
    elif component == "unet":
        model = UNet(unet_config(model_cfg["unet"]))
    else:
        cls = Encoder if component == "encoder" else Decoder
        model = cls(vae_config(model_cfg["vae"]))
    if folder is not None and not model_cfg.get("diffusers"):
        load_diffusers_weights(model, folder, component, dtype)
    if path is not None:
        from .checkpoint import load_component

        load_component(model, path, component, dtype=dtype)
    label = "random" if folder is None and path is None else str(folder or path)
    return model.to(device=device, dtype=dtype).eval(), label


def configure_variant(model: SIGEModel, variant: str) -> None:
    """``sige``: the paper's computation (self-attention keys/values projected densely, as published);
    ``sige_fast``: per transformer, whichever of that and the keys/values of the active tokens only (scattered
    into cached maps; same result) measures faster on its first sparse pass (kv_mode ``auto``)."""
    set_kv_mode(model, "auto" if variant == "sige_fast" else "dense")


def prepare(
    model_cfg: Mapping[str, Any],
    edit: Mapping[str, Any],
    component: str,
    device: str,
    dtype: torch.dtype,
    weights: str | None,
) -> Case:
    """One component of an SD / SDXL model on one edit, with the sparse-vs-dense PSNR in its rows."""
    size = tuple(model_cfg.get("image_size", (512, 1024)))
    case = load_case(edit, size)  # type: ignore[arg-type]
    model, label = build_component(model_cfg, component, weights, dtype, device)
    original, edited, masks = component_inputs(component, case, model_cfg, dtype, device, int(edit.get("seed") or 0))
    return Case(
        model=model,
        original=original,
        edited=edited,
        masks=masks,
        edited_fraction=round(case.edited_fraction, 6),
        weights=label,
        configure=configure_variant,
        fidelity=True,
        columns={"macs_convention": "paper: fused scaled_dot_product_attention not counted"},
        display=Display(
            original=case.original[0].numpy(),
            edited=case.edited[0].numpy(),
            mask=case.region.numpy(),
            size=size,  # type: ignore[arg-type]
            # the first sample, first three channels (a latent shows as RGB of 3 of its 4 channels)
            output=lambda out: out[0, :3].float().cpu().numpy(),
        ),
    )


def generate(cfg: Mapping[str, Any]) -> Any:
    """``task=generate``: see :func:`sdxl.generate.generate`."""
    from .generate import generate as _generate

    return _generate(cfg)
