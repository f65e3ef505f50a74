"""Edit cases of the diffusion models: images in [-1, 1] at the model's resolution, the difference mask and its
pyramid, built from the edits of :func:`sigebench.edits.load_edit`.

* image pairs (``church_example``, ``custom``, the ``church_sdedit`` set by index): the reference pipeline -
  the shorter side resized to the model resolution (bilinear, PIL's antialiasing, as torchvision's Resize) and
  centre-cropped, x*2-1, ``|orig - edit| > eps`` in any channel, cross-shaped dilation by the model's
  ``mask.dilation``; a given mask (``edit.mask``) replaces the difference mask (resized and cropped like the
  images, not dilated);
* ``synthetic`` (a seeded brush stroke of ``area`` at the model resolution) and mask-only edits
  (``engine_example``): the stroke / mask *is* the difference mask; the images are a smooth random image and
  the same image painted inside it (:func:`sigebench.edits.synthetic_images`).

The per-resolution pyramid then follows the reference: ``sige.utils.downsample_mask(mask,
min_res=resolution // 2**(levels-1))`` (threshold 0.3, per-level cross dilation 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sige import utils as sige_utils
from sigebench.edits import Edit, EditError, load_edit, synthetic_images, synthetic_stroke_mask
from sigebench.images import image_to_tensor


@dataclass
class EditCase:
    """Original and edited images ``[1, 3, S, S]`` in [-1, 1] and the difference mask ``bool [S, S]``."""

    name: str
    original: torch.Tensor
    edited: torch.Tensor
    mask: torch.Tensor

    @property
    def edited_fraction(self) -> float:
        return float(self.mask.float().mean())


def _resize_crop(a: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Shorter side resized to ``size`` (bilinear, or nearest for masks), then a centre crop to ``size`` x ``size``."""
    from PIL import Image

    im = Image.fromarray(a)
    w, h = im.size
    if (w, h) != (size, size):
        nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        im = im.resize((nw, nh), Image.NEAREST if nearest else Image.BILINEAR)
        left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
        im = im.crop((left, top, left + size, top + size))
    return np.asarray(im)


def image(a: Any, size: int, what: str) -> torch.Tensor:
    """An RGB ``uint8 [H, W, 3]`` array as the model's input ``[1, 3, size, size]`` in [-1, 1]."""
    if isinstance(a, Mapping) or not (isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 3):
        got = (
            "a mapping"
            if isinstance(a, Mapping)
            else f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}"
        )
        raise EditError(f"{what}: the diffusion models take RGB images (.png/.jpg), got {got}")
    return image_to_tensor(_resize_crop(a, size))


def difference_mask(original: torch.Tensor, edited: torch.Tensor, eps: float, dilation: int) -> torch.Tensor:
    """``|original - edited| > eps`` in any channel, then the original's cross-shaped dilation."""
    m = sige_utils.compute_difference_mask(original, edited, eps=eps)
    return sige_utils.dilate_mask(m, dilation)


def mask_pyramid(mask: torch.Tensor, min_res: int) -> dict[tuple[int, int], torch.Tensor]:
    """The reference's per-resolution masks (threshold 0.3, per-level cross dilation 1) down to ``min_res``."""
    return sige_utils.downsample_mask(mask, min_res=min_res, dilation=1)


def dataset_edit(edit: Mapping[str, Any], index: int) -> Edit:
    """Pair ``index`` of the LSUN Church SDEdit set (``<folder>/{original,edited}/%03d.png``)."""
    from sigebench.data import data_path
    from sigebench.images import read_image

    folder = edit.get("folder", "church_outdoor_sdedit")
    files = {k: data_path(edit["manifest"], f"{folder}/{k}/{index:03d}.png") for k in ("original", "edited")}
    return Edit(f"{edit['name']}_{index:03d}", "dataset", read_image(files["original"], "edit.original"),
                read_image(files["edited"], "edit.edited"))  # fmt: skip


def load_case(edit: Mapping[str, Any] | Edit, size: int, eps: float, dilation: int) -> EditCase:
    """The edit case of an edit config (or an already loaded :class:`~sigebench.edits.Edit`) at ``size``."""
    e = edit if isinstance(edit, Edit) else load_edit(edit)
    if e.kind == "dataset" and not isinstance(edit, Edit):
        if edit.get("index") is None:
            raise EditError(f"edit {e.name!r} needs an image index for one pair, e.g. edit.index=432")
        e = dataset_edit(edit, int(edit["index"]))
    if e.original is not None and e.edited is not None:
        o, ed = image(e.original, size, "edit.original"), image(e.edited, size, "edit.edited")
        if e.mask is not None:
            mask = torch.from_numpy(_resize_crop(e.mask.astype(np.uint8) * 255, size, nearest=True) > 127)
        else:
            mask = difference_mask(o, ed, eps, dilation)
        return EditCase(e.name, o, ed, mask)
    if e.kind == "synthetic":
        mask = torch.from_numpy(synthetic_stroke_mask(size, size, e.area, e.seed))
    elif e.mask is not None:
        mask = torch.from_numpy(_resize_crop(e.mask.astype(np.uint8) * 255, size, nearest=True) > 127)
    else:
        raise EditError(f"edit {e.name!r} gives neither an image pair nor a mask; the diffusion models need one")
    o, ed = synthetic_images(mask, e.seed)
    return EditCase(e.name, o, ed, mask)
