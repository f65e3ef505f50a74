"""LPIPS (AlexNet backbone, v0.1), optionally spatial and averaged inside a mask, as in the original benchmarks.

Built on the ``lpips`` package (its v0.1 linear layers ship inside it); the AlexNet backbone weights
(torchvision's ``alexnet-owt-7be5be79.pth``) come from a path, the torch hub cache or the downloader
(:mod:`sigebench.metrics.weights`), never from a silent download.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

from sigebench.images import resize_mask
from sigebench.metrics.weights import FILES, check_sha256_prefix, resolve


def _import_lpips():
    try:
        import lpips
    except ImportError as e:
        raise ImportError(
            "LPIPS needs the 'lpips' package: pip install 'sige-repro[metrics]' (or pip install lpips)"
        ) from e
    return lpips


class LPIPS(torch.nn.Module):
    """``LPIPS(alexnet=PATH)(x, y)`` on ``[B, 3, H, W]`` images in [-1, 1]; ``spatial=True`` gives ``[B, 1, H, W]``."""

    def __init__(self, alexnet: str | os.PathLike[str] | None = None, spatial: bool = False, device: str = "cpu"):
        super().__init__()
        lpips = _import_lpips()
        path = resolve({"alexnet": alexnet})["alexnet"]
        self.net = lpips.LPIPS(net="alex", version="0.1", spatial=spatial, pnet_rand=True, verbose=False)
        load_alexnet_features(self.net.net, path)
        self.net.eval().to(device)
        self.spatial = spatial

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x, y)


def load_alexnet_features(slices: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """Copy the ``features.{i}`` convs of a torchvision AlexNet state dict into lpips' ``slice1..5`` modules."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read the AlexNet weights {path}: {type(e).__name__}: {str(e)[:200]}") from e
    if path.name == FILES["alexnet"].item:
        check_sha256_prefix(path, FILES["alexnet"].sha256_prefix)
    feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    target = {}
    for sl in (slices.slice1, slices.slice2, slices.slice3, slices.slice4, slices.slice5):
        for name, mod in sl.named_children():
            for pname, p in mod.named_parameters(recurse=False):
                target[f"{name}.{pname}"] = p
    missing = sorted(set(target) - set(feats))
    if missing:
        raise ValueError(
            f"{path} is not a torchvision AlexNet state dict: missing features.{', features.'.join(missing)}"
        )
    for k, p in target.items():
        if tuple(feats[k].shape) != tuple(p.shape):
            raise ValueError(f"{path}: features.{k} has shape {tuple(feats[k].shape)}, AlexNet needs {tuple(p.shape)}")
        with torch.no_grad():
            p.copy_(feats[k])


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {a.dtype} {a.shape}")
    return torch.from_numpy(a.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]


@torch.no_grad()
def lpips_pair(metric: LPIPS, a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """LPIPS of two uint8 RGB images; with ``mask`` (needs ``spatial=True``) the spatial map's mean inside it."""
    x, y = _to_tensor(a), _to_tensor(b)
    if x.shape != y.shape:
        y = torch.nn.functional.interpolate(y, size=x.shape[-2:], mode="nearest")
    device = next(metric.parameters()).device
    d = metric(x.to(device), y.to(device))
    if mask is None:
        return float(d.mean())
    if not metric.spatial:
        raise ValueError("a masked LPIPS needs LPIPS(spatial=True)")
    m = torch.from_numpy(resize_mask(mask, tuple(d.shape[-2:])))[None, None]
    if not m.any():
        raise ValueError("the mask selects no pixel; LPIPS inside an empty mask is undefined")
    return float(d.cpu()[m].mean())


def lpips_folders(
    root: str | os.PathLike[str],
    ref_root: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
    alexnet: str | os.PathLike[str] | None = None,
    device: str = "cpu",
) -> dict:
    """Mean LPIPS of every image of ``root`` against the same-named one in ``ref_root`` (masked with
    ``masks[<stem>]`` when given)."""
    from sigebench.images import read_image

    root, ref_root = Path(root), Path(ref_root)
    stems = sorted(p.stem for p in root.glob("*.png")) if names is None else list(names)
    if not stems:
        raise ValueError(f"no images to compare in {root}")
    metric = LPIPS(alexnet, spatial=masks is not None, device=device)
    values = {}
    for s in stems:
        a, b = read_image(root / f"{s}.png", "LPIPS image"), read_image(ref_root / f"{s}.png", "LPIPS reference")
        values[s] = lpips_pair(metric, a, b, None if masks is None else masks[s])
    v = np.array(list(values.values()))
    return {"mean": float(v.mean()), "std": float(v.std()), "count": len(v), "values": values}
