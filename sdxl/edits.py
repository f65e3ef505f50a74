"""Edit cases and the reference pipelines' mask pyramids.

* SDEdit (``stable-diffusion/runners/sdedit_runner.py`` of the reference): pixel difference ``> 0.02``
  (images in [-1, 1]), cross-dilated by 5 px, ``downsample_mask(min_res=(4, 4), dilation=1)`` for the UNet
  and the encoder; the decoder's pyramid is re-derived from that mask dilated by 40 px more, with
  ``downsample_mask(min_res=(4, 4), dilation=0)``.
* Inpainting (``inpainting_runner.py``): ``downsample_mask(mask, min_res=8, dilation=1)`` for the UNet and
  the decoder.

All dilations use the original engine's cross-shaped element (``sige.utils``). Edits come from the one edit
loader (:func:`sigebench.edits.load_edit`): an image pair is an SDEdit edit (a given ``edit.mask`` replaces the
difference), an image with a mask and no edited image (or ``inpainting: true``) an inpainting edit, and a
synthetic stroke is painted into a smooth random image (:func:`sigebench.edits.synthetic_images`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from sige import utils as sige_utils
from sigebench.edits import EditError, load_edit, synthetic_images, synthetic_stroke_mask
from sigebench.images import image_to_tensor, resize_mask

SDEDIT_EPS = 0.02
SDEDIT_DILATION = 5
DECODER_EXTRA_DILATION = 40
Masks = dict[tuple[int, int], torch.Tensor]


def resize_image(a: np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``uint8 [H, W, 3]`` as ``[1, 3, H, W]`` in [-1, 1]; resized (LANCZOS) to ``size = (H, W)`` or to multiples
    of 32."""
    img = Image.fromarray(a)
    w, h = img.size
    H, W = size if size is not None else (h - h % 32, w - w % 32)
    if (W, H) != (w, h):
        img = img.resize((W, H), resample=Image.LANCZOS)
    return image_to_tensor(np.asarray(img))


def sdedit_masks(
    original: torch.Tensor, edited: torch.Tensor, diff: torch.Tensor | None = None
) -> tuple[torch.Tensor, Masks, Masks]:
    """``(difference mask [H, W], UNet/encoder pyramid, decoder pyramid)`` of an SDEdit pair (``diff`` replaces
    the computed difference)."""
    if original.shape != edited.shape:
        raise ValueError(f"original {tuple(original.shape)} and edited {tuple(edited.shape)} images differ in size")
    if diff is None:
        diff = sige_utils.compute_difference_mask(original, edited, eps=SDEDIT_EPS)
    dilated = sige_utils.dilate_mask(diff, SDEDIT_DILATION)
    masks = sige_utils.downsample_mask(dilated, min_res=(4, 4), dilation=1)
    # dilated by 40 px before the pyramid, so its levels need no dilation of their own (a plain dict: no warning)
    decoder = dict(sige_utils.downsample_mask(sige_utils.dilate_mask(dilated, DECODER_EXTRA_DILATION), (4, 4), 0))
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


def _sdedit_case(
    name: str, original: torch.Tensor, edited: torch.Tensor, diff: torch.Tensor | None = None, **meta: Any
) -> EditCase:
    diff, masks, dec = sdedit_masks(original, edited, diff)
    return EditCase(name, "sdedit", original, edited, diff, masks, dec, dict(meta))


def _inpainting_case(name: str, original: torch.Tensor, mask: np.ndarray | torch.Tensor, **meta: Any) -> EditCase:
    m = torch.from_numpy(resize_mask(np.asarray(mask), tuple(original.shape[2:])))
    masks = inpainting_masks(m)
    edited = torch.where(m[None, None], torch.full_like(original, -1.0), original)
    return EditCase(name, "inpainting", original, edited, m, masks, masks, dict(meta))


def load_case(edit: Mapping[str, Any], image_size: tuple[int, int] = (512, 1024)) -> EditCase:
    """The edit case of an edit config (``configs/edit/*.yaml``) at ``image_size = (H, W)``."""
    e = load_edit(edit)
    meta = {"prompt": e.meta.get("prompt"), "seed": e.seed}
    if e.kind == "synthetic":
        H, W = image_size
        stroke = torch.from_numpy(synthetic_stroke_mask(H, W, e.area, e.seed))
        orig, edited = synthetic_images(stroke, e.seed)
        return _sdedit_case(e.name, orig, edited, area=e.area, **meta)
    for key, x in (("edit.original", e.original), ("edit.edited", e.edited)):
        if x is not None and not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 3):
            raise EditError(f"{key}: the SD / SDXL models take RGB images (.png/.jpg), got {getattr(x, 'dtype', x)}")
    if e.original is None:
        raise EditError(f"edit {e.name!r} has no original image; SD / SDXL edits need edit.original")
    orig = resize_image(e.original, image_size)
    if edit.get("inpainting") or e.edited is None:
        if e.mask is None:
            raise EditError(f"edit {e.name!r}: an inpainting edit needs edit.mask (and SDEdit needs edit.edited)")
        return _inpainting_case(e.name, orig, e.mask, **meta)
    diff = None if e.mask is None else torch.from_numpy(resize_mask(e.mask, image_size))
    return _sdedit_case(e.name, orig, resize_image(e.edited, image_size), diff, **meta)
