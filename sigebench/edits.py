"""The one edit loader: every edit config (``configs/edit/*.yaml``) becomes an :class:`Edit` here.

Edit kinds:

* ``files``: the paper's example edits, items of a data manifest (``manifest: example_edits``) named by
  ``original``, ``edited`` and ``mask`` (any of them; an input may also be a mapping of named arrays, e.g. a
  label map and an instance map);
* ``custom``: any user edit, ``edit.original=PATH edit.edited=PATH [edit.mask=PATH]`` (paths instead of
  manifest items; the mask, when given, replaces the difference mask);
* ``synthetic``: a seeded brush stroke of ``area`` (a fraction in [0, 1]) drawn at the model's resolution by
  :func:`synthetic_stroke_mask`; image models paint it into a smooth random image (:func:`synthetic_images`);
* ``dataset``: an item of a benchmark set (``church_sdedit``, ``cityscapes_edit``), read by its family.

Files are read as they are (images as ``uint8 [H, W, 3]``, ``.npy`` as numeric arrays, never pickles); the
sizes of original, edited and mask must agree, and every error names the edit key and the file. Families
then resize the inputs the way their pipelines do.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sigebench.images import IMAGE_SUFFIXES, read_image

KINDS = ("files", "custom", "synthetic", "dataset")


class EditError(ValueError):
    """An edit config or edit file that cannot be used (the message names the key and the file)."""


@dataclass
class Edit:
    """An edit as its files give it. Inputs are arrays (``uint8 [H, W, 3]`` images or ``.npy`` arrays) or mappings
    of named arrays; ``mask`` is ``bool [H, W]``; a synthetic edit has only ``area`` and ``seed``."""

    name: str
    kind: str
    original: Any = None
    edited: Any = None
    mask: np.ndarray | None = None
    area: float | None = None
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int] | None:
        """(H, W) of the inputs (or the mask), None for a synthetic edit."""
        for x in (self.original, self.edited, self.mask):
            a = next(iter(x.values())) if isinstance(x, Mapping) else x
            if a is not None:
                return int(a.shape[0]), int(a.shape[1])
        return None


def read_array(path: str | os.PathLike[str], what: str) -> np.ndarray:
    """A ``.npy`` array (numeric, no pickles) or an image file (``uint8 [H, W, 3]``)."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise EditError(f"{what}: {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    if path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            return read_image(path, what)
        except ValueError as e:
            raise EditError(str(e)) from None
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise EditError(f"{what}: {path} holds pickled (object) data; give a numeric .npy array") from None
        raise EditError(f"{what}: {path} is neither a .npy array nor an image ({e})") from None
    except OSError as e:
        raise EditError(f"{what}: cannot read {path} ({e})") from None
    if not isinstance(a, np.ndarray) or a.dtype == object:
        raise EditError(f"{what}: {path} is not a numeric .npy array")
    return a


def _as_mask(a: np.ndarray, what: str) -> np.ndarray:
    a = np.squeeze(a)
    if a.ndim == 3 and a.shape[2] in (3, 4):  # a mask drawn as an image: non-black pixels are edited
        a = a[..., :3].max(axis=2)
    if a.ndim != 2:
        raise EditError(f"{what}: a mask must be 2-D [H, W], got shape {a.shape}")
    return a != 0


def _input(spec: Any, resolve, what: str) -> Any:
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return {k: read_array(resolve(v), f"{what}.{k}") for k, v in spec.items() if v is not None}
    return read_array(resolve(spec), what)


def _hw(x: Any) -> tuple[tuple[int, int], ...]:
    arrays = x.values() if isinstance(x, Mapping) else [x]
    return tuple((int(a.shape[0]), int(a.shape[1])) for a in arrays)


def load_edit(edit: Mapping[str, Any]) -> Edit:
    """Read the files of an edit config (kinds ``files``, ``custom``, ``synthetic``; a ``dataset`` edit only
    gets its name and settings here, its family reads the set)."""
    kind = edit.get("kind")
    name = str(edit.get("name") or kind)
    if kind not in KINDS:
        raise EditError(f"edit {name!r}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    seed = edit.get("seed")
    if seed is None:
        seed = 0
    elif isinstance(seed, bool) or not isinstance(seed, int | str) or not str(seed).strip().lstrip("-").isdigit():
        raise EditError(f"edit.seed must be an integer, got {seed!r}")
    seed = int(seed)
    meta = {k: edit[k] for k in ("prompt",) if edit.get(k) is not None}
    if kind == "synthetic":
        area = edit.get("area")
        try:
            area = float(area)
        except (TypeError, ValueError):
            raise EditError(f"edit.area must be a fraction in [0, 1], got {area!r}") from None
        if not (math.isfinite(area) and 0.0 <= area <= 1.0):
            raise EditError(f"edit.area must be a fraction in [0, 1], got {area!r}")
        return Edit(name, kind, area=area, seed=seed, meta=meta)
    if kind == "dataset":
        return Edit(name, kind, seed=seed, meta=meta)
    if kind == "files":
        from sigebench.data import data_path

        manifest = edit.get("manifest")
        if not manifest:
            raise EditError(f"edit {name!r} (kind files) needs a manifest")

        def resolve(item: str) -> Path:
            return data_path(manifest, str(item))
    else:  # custom: user paths
        missing = [k for k in ("original", "edited") if edit.get(k) in (None, "", "???")]
        if missing:
            raise EditError(
                "edit=custom needs edit.original=PATH and edit.edited=PATH (and optionally edit.mask=PATH); "
                f"missing: {', '.join('edit.' + k for k in missing)}"
            )

        def resolve(item: str) -> Path:
            return Path(str(item))

    original = _input(edit.get("original"), resolve, "edit.original")
    edited = _input(edit.get("edited"), resolve, "edit.edited")
    mask = edit.get("mask")
    mask = None if mask in (None, "") else _as_mask(read_array(resolve(mask), "edit.mask"), "edit.mask")
    sizes = {f"edit.{k}": _hw(v) for k, v in (("original", original), ("edited", edited)) if v is not None}
    if mask is not None:
        sizes["edit.mask"] = (tuple(mask.shape),)
    flat = {key: s for key, shapes in sizes.items() for s in shapes}
    if len(set(flat.values())) > 1:
        listed = ", ".join(f"{k} {h}x{w}" for k, shapes in sizes.items() for h, w in shapes)
        raise EditError(f"edit {name!r}: the inputs differ in size ({listed}); give original, edited and mask of "
                        "one size (the model's pipeline resizes them together)")  # fmt: skip
    return Edit(name, kind, original, edited, mask, seed=seed, meta=meta)


def synthetic_stroke_mask(height: int, width: int, area: float, seed: int = 0) -> np.ndarray:
    """A seeded brush-stroke mask ``bool [height, width]`` covering about ``area`` of the image.

    A round brush (radius ~ sqrt(area)) follows a smooth random walk and stops as soon as the stroke
    covers ``area`` (overshooting by at most one brush stamp); the walk reflects at the borders.
    ``area <= 0`` gives an empty mask, ``area >= 1`` a full one.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    if not math.isfinite(area):
        raise ValueError(f"area must be a fraction in [0, 1], got {area}")
    mask = np.zeros((height, width), dtype=bool)
    target = int(round(area * height * width))
    if target <= 0:
        return mask
    if target >= height * width:
        return ~mask
    rng = np.random.default_rng(seed)
    radius = max(1.0, math.sqrt(target) / 5.0)
    rr, cc = np.mgrid[-math.ceil(radius) : math.ceil(radius) + 1, -math.ceil(radius) : math.ceil(radius) + 1]
    disk = rr**2 + cc**2 <= radius**2
    dr, dc = rr[disk], cc[disk]
    y, x = rng.uniform(0.2, 0.8) * (height - 1), rng.uniform(0.2, 0.8) * (width - 1)
    angle = rng.uniform(0, 2 * math.pi)
    count = 0
    step = max(0.5, radius / 2)
    for _ in range(100 * (height + width) + 10 * target):
        ys = np.clip(np.round(y + dr).astype(int), 0, height - 1)
        xs = np.clip(np.round(x + dc).astype(int), 0, width - 1)
        new = ~mask[ys, xs]
        if new.any():
            mask[ys[new], xs[new]] = True
            count = int(mask.sum())
            if count >= target:
                break
        angle += rng.normal(0, 0.35)
        y, x = y + step * math.sin(angle), x + step * math.cos(angle)
        if not 0 <= y <= height - 1:
            angle = -angle
            y = min(max(y, 0.0), height - 1.0)
        if not 0 <= x <= width - 1:
            angle = math.pi - angle
            x = min(max(x, 0.0), width - 1.0)
        if rng.random() < 0.02:  # jump to a fresh spot now and then, so strokes never stall in a corner
            y, x = rng.uniform(0, height - 1), rng.uniform(0, width - 1)
    return mask


def synthetic_images(stroke: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth seeded random image ``[1, 3, H, W]`` in [-1, 1] and the same image with ``stroke`` (bool
    ``[H, W]``) painted in one colour that differs from every painted pixel by at least 0.1."""
    H, W = (int(s) for s in stroke.shape)
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, max(H // 16, 2), max(W // 16, 2), generator=gen) * 2 - 1
    original = F.interpolate(low, size=(H, W), mode="bicubic", align_corners=False).clamp(-1, 1)
    colour = torch.rand(1, 3, 1, 1, generator=gen) * 2 - 1
    far = torch.where(colour - original > 0, torch.ones_like(original), -torch.ones_like(original))
    colour = torch.where((colour - original).abs() < 0.1, far, colour.expand_as(original))
    return original, torch.where(stroke[None, None], colour, original)
