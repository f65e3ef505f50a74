"""PSNR on uint8 images, optionally inside a mask, and mean +- std over a folder pairing.

Semantics of the original benchmarks (skimage ``peak_signal_noise_ratio`` with data range 255): both images
are NEAREST-resized to a common size when they differ; with a mask, only the pixels the mask (NEAREST-resized
to the image, as the original resizes it) marks count, over all channels. Identical images (MSE 0) get the PSNR
of a one-level difference in one value (the original GauGAN metric's nudge) instead of infinity.
The original's (w, h) swap for non-square masks is not repeated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from sigebench.images import resize_mask


def _as_uint8(img: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise TypeError(f"{name} must be a uint8 image, got {a.dtype} (convert with (x*255).round().astype(np.uint8))")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"{name} must be [H, W] or [H, W, C], got shape {a.shape}")
    return a


def _resize_nearest(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if a.shape[:2] == hw:
        return a
    chans = [np.asarray(Image.fromarray(a[..., c]).resize((hw[1], hw[0]), Image.NEAREST)) for c in range(a.shape[2])]
    return np.stack(chans, axis=-1)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (dB) of two uint8 images ``[H, W(, C)]``; ``mask`` restricts it to the edited pixels."""
    a, b = _as_uint8(a, "a"), _as_uint8(b, "b")
    if a.shape[2] != b.shape[2]:
        raise ValueError(f"channel counts differ: {a.shape} vs {b.shape}")
    if a.shape != b.shape:
        b = _resize_nearest(b, a.shape[:2])
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        keep = resize_mask(mask, a.shape[:2])
        if not keep.any():
            raise ValueError("the mask selects no pixel; PSNR inside an empty mask is undefined")
        diff = diff[keep]
    mse = float(np.mean(diff**2))
    if mse == 0:
        mse = 1.0 / diff.size  # one value off by one level
    return 10.0 * math.log10(255.0**2 / mse)


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def psnr_folders(
    root: str | os.PathLike[str],
    ref_root: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
) -> dict:
    """PSNR of every image of ``root`` against the same-named one in ``ref_root`` (``names`` = file stems to use;
    default: every PNG of ``root``); ``masks`` maps stems to masks. Returns mean, std, count and the values."""
    root, ref_root = Path(root), Path(ref_root)
    stems = sorted(p.stem for p in root.glob("*.png")) if names is None else list(names)
    if not stems:
        raise ValueError(f"no images to compare in {root}")
    values = {}
    for s in stems:
        a, b = root / f"{s}.png", ref_root / f"{s}.png"
        for p in (a, b):
            if not p.is_file():
                raise FileNotFoundError(f"PSNR needs {p}")
        values[s] = psnr(_read(a), _read(b), None if masks is None else masks[s])
    v = np.array(list(values.values()))
    return {"mean": float(v.mean()), "std": float(v.std()), "count": len(v), "values": values}
