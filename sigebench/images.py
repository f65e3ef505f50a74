"""Reading and writing images: the one image reader and the one image writer of the suite."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def to_uint8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """An image as ``uint8 [H, W, 3]`` (or ``[H, W]``): a tensor ``[1|3, H, W]`` / ``[1, 3, H, W]`` in [-1, 1]
    is mapped to [0, 255] and rounded (as torchvision's save_image); uint8 arrays pass unchanged."""
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint8:
            return x
        if x.dtype == bool:
            return x.astype(np.uint8) * 255
        raise TypeError(f"a numpy image must be uint8 or bool, got {x.dtype}")
    t = x.detach().float().cpu()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"save one image at a time, got a batch of {t.shape[0]}")
        t = t[0]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"expected an image tensor [1|3, H, W] in [-1, 1], got shape {tuple(t.shape)}")
    t = ((t.clamp(-1, 1) + 1) / 2 * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    a = t.permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[2] == 1 else a


def save_image(x: torch.Tensor | np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an image (see :func:`to_uint8`) as PNG (or the format of the suffix), creating the folder."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    Image.fromarray(to_uint8(x)).save(tmp)
    os.replace(tmp, path)  # a killed run never leaves a half-written image that a resumed run would reuse
    return path


def read_image(path: str | os.PathLike[str], what: str = "image") -> np.ndarray:
    """An RGB image file as ``uint8 [H, W, 3]`` (errors name ``what`` and the file)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{what}: {path} is not a readable image ({type(e).__name__}: {e})") from None


def image_to_tensor(a: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> ``float [1, 3, H, W]`` in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32) / 255.0).permute(2, 0, 1)[None] * 2 - 1


def resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A mask (bool or numbers; non-zero = selected) as ``bool [H, W]``, NEAREST-resized to ``hw``."""
    from PIL import Image

    m = np.asarray(mask).squeeze()
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W], got shape {m.shape}")
    m = m != 0
    if m.shape != tuple(hw):
        m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((hw[1], hw[0]), Image.NEAREST)) > 127
    return m
