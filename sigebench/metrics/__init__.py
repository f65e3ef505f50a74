"""Quality metrics: PSNR (uint8, optional mask), LPIPS (AlexNet, v0.1, optionally masked) and FID (clean-fid's
statistics and Frechet distance, with a TorchScript Inception-v3 that also works offline).

Weights come from paths the user gives or the data layer (``datasets/metric_weights.yaml``); when some are
absent, one :class:`MissingWeightsError` lists exactly what to download. LPIPS and FID need the ``metrics`` extra.
"""

from sigebench.metrics.psnr import psnr, psnr_folders
from sigebench.metrics.weights import MissingWeightsError, resolve

__all__ = ["MissingWeightsError", "fid", "lpips_folders", "psnr", "psnr_folders", "resolve"]


def __getattr__(name: str):  # LPIPS / FID import their optional packages only when used
    if name in ("fid", "load_inception", "compare_extractors", "load_stats"):
        from sigebench.metrics import fid as _fid

        return getattr(_fid, name)
    if name in ("LPIPS", "lpips_folders", "lpips_pair"):
        from sigebench.metrics import lpips as _lpips

        return getattr(_lpips, name)
    raise AttributeError(name)
