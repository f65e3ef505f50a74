"""Edit cases for the diffusion benchmarks: images in [-1, 1] at the model's resolution and the difference mask.

Edit config kinds (``configs/edit/*.yaml``):

* ``pair``: ``manifest``, ``original``, ``edited`` items (``church_example``) - the reference pipeline:
  Resize + CenterCrop to the model resolution, x*2-1, ``|orig - edit| > eps`` in any channel, cross-shaped
  dilation by the model's radius;
* ``dataset``: ``manifest``, ``folder`` and ``index`` (``church_sdedit``, ``edit.index=432``) - the same
  pipeline on ``<folder>/original/%03d.png`` and ``<folder>/edited/%03d.png`` (the dataset's own masks are
  not used, as in the original);
* ``custom``: ``original``, ``edited`` paths and an optional ``mask`` (.npy, or an image whose non-zero
  pixels are the edit), which is then used as the difference mask (resized nearest, not dilated);
* ``synthetic``: ``area``, ``seed`` - a seeded brush stroke (:func:`sige.edits.synthetic_stroke_mask`) of
  that area fraction at the model resolution *is* the difference mask; the images are a smooth random
  image and the same image with the stroke painted in a random colour;
* ``mask``: ``manifest``, ``mask`` (``engine_example``) - a given mask, resized nearest, used like a stroke.

The per-resolution pyramid then follows the reference: ``sige.utils.downsample_mask(mask,
min_res=resolution // 2**(levels-1))`` (threshold 0.3, per-level cross dilation 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sige import utils as sige_utils


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


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """An RGB image as ``[1, 3, size, size]`` in [-1, 1]: shorter side resized to ``size`` (bilinear, with
    PIL's antialiasing, as torchvision's Resize on PIL images), then a centre crop."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    im = Image.open(path).convert("RGB")
    w, h = im.size
    if (w, h) != (size, size):
        nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
        im = im.crop((left, top, left + size, top + size))
    a = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    return a * 2 - 1


def load_mask(path: str | Path, size: int) -> torch.Tensor:
    """A user mask (.npy bool/number array, or an image: non-zero = edited) as ``bool [size, size]``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask {path} does not exist")
    if path.suffix == ".npy":
        m = torch.from_numpy(np.asarray(np.load(path)))
    else:
        from PIL import Image

        m = torch.from_numpy(np.asarray(Image.open(path).convert("L")))
    m = m.squeeze()
    if m.dim() != 2:
        raise ValueError(f"mask {path} must be 2-D [H, W], got shape {tuple(m.shape)}")
    m = m != 0
    if tuple(m.shape) != (size, size):
        m = F.interpolate(m.float()[None, None], size=(size, size), mode="nearest")[0, 0] > 0.5
    return m


def difference_mask(original: torch.Tensor, edited: torch.Tensor, eps: float, dilation: int) -> torch.Tensor:
    """``|original - edited| > eps`` in any channel, then the original's cross-shaped dilation."""
    m = sige_utils.compute_difference_mask(original, edited, eps=eps)
    return sige_utils.dilate_mask(m, dilation)


def mask_pyramid(mask: torch.Tensor, min_res: int) -> dict[tuple[int, int], torch.Tensor]:
    """The reference's per-resolution masks (threshold 0.3, per-level cross dilation 1) down to ``min_res``."""
    return sige_utils.downsample_mask(mask, min_res=min_res, dilation=1)


def _smooth_image(size: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.rand(1, 3, max(size // 16, 2), max(size // 16, 2), generator=gen) * 2 - 1
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def _paint(original: torch.Tensor, mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    colour = torch.rand(1, 3, 1, 1, generator=gen) * 2 - 1
    far = torch.where(colour - original > 0, torch.ones_like(original), -torch.ones_like(original))
    colour = torch.where((colour - original).abs() < 0.1, far, colour.expand_as(original))  # always visibly different
    return torch.where(mask[None, None], colour, original)


def load_edit(edit: dict, size: int, eps: float, dilation: int) -> EditCase:
    """Build the edit case described by an edit config at ``size`` x ``size``."""
    from sige.data import data_path

    kind = edit.get("kind")
    name = str(edit.get("name", kind))
    if kind == "pair":
        o = load_image(data_path(edit["manifest"], edit["original"]), size)
        e = load_image(data_path(edit["manifest"], edit["edited"]), size)
        return EditCase(name, o, e, difference_mask(o, e, eps, dilation))
    if kind == "dataset":
        if edit.get("index") is None:
            raise ValueError(f"edit {name!r} needs an image index, e.g. edit.index=432")
        idx = int(edit["index"])
        folder = edit.get("folder", "church_outdoor_sdedit")
        o = load_image(data_path(edit["manifest"], f"{folder}/original/{idx:03d}.png"), size)
        e = load_image(data_path(edit["manifest"], f"{folder}/edited/{idx:03d}.png"), size)
        return EditCase(f"{name}_{idx:03d}", o, e, difference_mask(o, e, eps, dilation))
    if kind == "custom":
        for key in ("original", "edited"):
            if not edit.get(key) or edit[key] == "???":
                raise ValueError(f"edit=custom needs edit.{key}=PATH (and optionally edit.mask=PATH)")
        o, e = load_image(edit["original"], size), load_image(edit["edited"], size)
        mask = load_mask(edit["mask"], size) if edit.get("mask") else difference_mask(o, e, eps, dilation)
        return EditCase(name, o, e, mask)
    gen = torch.Generator().manual_seed(int(edit.get("seed", 0)))
    if kind == "synthetic":
        from sige.edits import synthetic_stroke_mask

        mask = torch.from_numpy(synthetic_stroke_mask(size, size, float(edit["area"]), int(edit.get("seed", 0))))
    elif kind == "mask":
        mask = load_mask(data_path(edit["manifest"], edit["mask"]), size)
    else:
        raise ValueError(
            f"edit {name!r} has kind {kind!r}; the diffusion models take pair, dataset, custom, synthetic or mask edits"
        )
    o = _smooth_image(size, gen)
    return EditCase(name, o, _paint(o, mask, gen), mask)
