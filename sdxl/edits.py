"""Edit cases and the reference pipelines' mask pyramids.

* SDEdit (``stable-diffusion/runners/sdedit_runner.py`` of the reference): pixel difference ``> 0.02``
  (images in [-1, 1]), cross-dilated by 5 px, ``downsample_mask(min_res=(4, 4), dilation=1)`` for the UNet
  and the encoder; the decoder's pyramid is re-derived from that mask dilated by 40 px more, with
  ``downsample_mask(min_res=(4, 4), dilation=0)``.
* Inpainting (``inpainting_runner.py``): ``downsample_mask(mask, min_res=8, dilation=1)`` for the UNet and
  the decoder.

All dilations use the original engine's cross-shaped element (``sige.utils``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sige import utils as sige_utils

SDEDIT_EPS = 0.02
SDEDIT_DILATION = 5
DECODER_EXTRA_DILATION = 40
Masks = dict[tuple[int, int], torch.Tensor]


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """RGB image as ``[1, 3, H, W]`` in [-1, 1]; resized (LANCZOS) to ``size = (H, W)`` or to multiples of 32."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    img = Image.open(path).convert("RGB")
    w, h = img.size
    H, W = size if size is not None else (h - h % 32, w - w % 32)
    if (W, H) != (w, h):
        img = img.resize((W, H), resample=Image.LANCZOS)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous() * 2.0 - 1.0


def sdedit_masks(original: torch.Tensor, edited: torch.Tensor) -> tuple[torch.Tensor, Masks, Masks]:
    """``(difference mask [H, W], UNet/encoder pyramid, decoder pyramid)`` of an SDEdit pair."""
    if original.shape != edited.shape:
        raise ValueError(f"original {tuple(original.shape)} and edited {tuple(edited.shape)} images differ in size")
    diff = sige_utils.compute_difference_mask(original, edited, eps=SDEDIT_EPS)
    dilated = sige_utils.dilate_mask(diff, SDEDIT_DILATION)
    masks = sige_utils.downsample_mask(dilated, min_res=(4, 4), dilation=1)
    decoder = sige_utils.downsample_mask(sige_utils.dilate_mask(dilated, DECODER_EXTRA_DILATION), (4, 4), 0)
    return diff, masks, decoder


def inpainting_masks(mask: torch.Tensor | np.ndarray) -> Masks:
    """UNet and decoder pyramid of an inpainting mask (True = region to repaint)."""
    m = torch.as_tensor(np.asarray(mask)).bool()
    if m.dim() != 2:
        raise ValueError(f"an inpainting mask must be a 2-D [H, W] array, got shape {tuple(m.shape)}")
    return sige_utils.downsample_mask(m, min_res=8, dilation=1)


def complete_pyramid(masks, smallest: tuple[int, int]):
    """The pyramid extended (same halving, dilation 1) down to ``smallest`` where the edit's stopped short
    (small images); levels already present are kept as they are."""
    masks = dict(masks)
    low = min(masks, key=lambda k: k[0] * k[1])
    if low[0] > smallest[0] or low[1] > smallest[1]:
        extra = sige_utils.downsample_mask(masks[low], min_res=smallest, dilation=1)
        for k, v in extra.items():
            masks.setdefault(k, v)
    return masks


@dataclass
class EditCase:
    """One edit: images in [-1, 1] ``[1, 3, H, W]``, the edited region, and the pyramids the pipelines use."""

    name: str
    kind: str  # "sdedit" | "inpainting"
    original: torch.Tensor
    edited: torch.Tensor  # inpainting: the original with the masked region blacked out (the encoder's edit)
    region: torch.Tensor  # bool [H, W]: pixels that differ (SDEdit) or the inpainting mask
    masks: Masks  # UNet and encoder
    decoder_masks: Masks
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.original.shape[2]), int(self.original.shape[3])

    @property
    def edited_fraction(self) -> float:
        return float(self.region.float().mean())


def _sdedit_case(name: str, original: torch.Tensor, edited: torch.Tensor, **meta: Any) -> EditCase:
    diff, masks, dec = sdedit_masks(original, edited)
    return EditCase(name, "sdedit", original, edited, diff, masks, dec, dict(meta))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A boolean ``[H, W]`` mask resized (nearest) to ``size = (H, W)``, as the image was resized."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be a 2-D [H, W] array, got shape {mask.shape}")
    if mask.shape == tuple(size):
        return mask.astype(bool)
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(img) > 127


def _inpainting_case(name: str, original: torch.Tensor, mask: np.ndarray | torch.Tensor, **meta: Any) -> EditCase:
    m = torch.from_numpy(resize_mask(np.asarray(mask), tuple(original.shape[2:])))
    masks = inpainting_masks(m)
    edited = torch.where(m[None, None], torch.full_like(original, -1.0), original)
    return EditCase(name, "inpainting", original, edited, m, masks, masks, dict(meta))


def synthetic_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth seeded random image ``[1, 3, H, W]`` in [-1, 1] (low-frequency noise, upsampled)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, max(2, height // 32), max(2, width // 32), generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(height, width), mode="bicubic", align_corners=False).clamp(-1, 1)


def load_edit(edit: Mapping[str, Any], image_size: tuple[int, int] = (512, 1024)) -> EditCase:
    """Build the edit case of an ``edit`` config (``configs/edit/*.yaml``) at ``image_size = (H, W)``."""
    from sige.data import data_path

    kind = edit.get("kind")
    name = edit.get("name", kind)
    if kind == "sdedit":
        orig = load_image(data_path(edit["manifest"], edit["original"]), image_size)
        edited = load_image(data_path(edit["manifest"], edit["edited"]), image_size)
        return _sdedit_case(name, orig, edited, prompt=edit.get("prompt"), seed=edit.get("seed"))
    if kind == "inpainting":
        orig = load_image(data_path(edit["manifest"], edit["original"]), image_size)
        mask = np.load(data_path(edit["manifest"], edit["mask"]))
        return _inpainting_case(name, orig, mask, prompt=edit.get("prompt"), seed=edit.get("seed"))
    if kind == "synthetic":
        from sige.edits import synthetic_stroke_mask

        H, W = image_size
        stroke = torch.from_numpy(synthetic_stroke_mask(H, W, float(edit["area"]), int(edit.get("seed", 0))))
        orig = synthetic_image(H, W, int(edit.get("seed", 0)))
        edited = torch.where(stroke[None, None], -orig, orig)  # a strong change inside the stroke only
        return _sdedit_case(name, orig, edited, area=float(edit["area"]))
    if kind == "custom":
        orig = load_image(edit["original"], image_size)
        if edit.get("mask"):
            return _inpainting_case(name, orig, np.load(edit["mask"]))
        if not edit.get("edited"):
            raise ValueError("a custom edit needs edit.edited=PATH (SDEdit) or edit.mask=PATH (inpainting)")
        return _sdedit_case(name, orig, load_image(edit["edited"], image_size))
    raise ValueError(
        f"the SD/SDXL models take the edits sd_sdedit0, sd_sdedit1, sd_inpainting, synthetic and custom; "
        f"got {name!r} (kind {kind!r})"
    )
