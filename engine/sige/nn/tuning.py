"""Choosing block sizes for speed: re-sizing Gathers and a small autotune over candidate sizes.

MAC counts always follow the blocks actually used, because the profile pass reads the geometry
the Gathers hold when it runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping

import torch

from sige.nn.base import SIGEModel
from sige.nn.gather import Gather


def set_block_sizes(model: torch.nn.Module, sizes: Mapping[int, int]) -> None:
    """Re-size every Gather whose conv has kernel ``k`` to ``sizes[k]`` (e.g. ``{3: 10, 1: 8}``).

    Call ``set_masks`` afterwards: active blocks and scatter maps depend on the block size.
    """
    for g in model.modules():
        if isinstance(g, Gather):
            k = g.kernel_size[0]
            if k in sizes:
                g.resize(sizes[k])


def block_size_candidates(kernel: int, stride: int = 1) -> list[int]:
    """Input block sizes giving output tiles of 4, 6, 8, 12 and 16 pixels (for this kernel and stride)."""
    return [(t - 1) * stride + kernel for t in (4, 6, 8, 12, 16)]


# (model class, mask resolutions, active-area bucket per resolution, threads, candidates) -> best size map
_TUNED: dict[tuple, dict[int, int]] = {}


def _tuning_key(model: SIGEModel, masks: Mapping[tuple[int, int], torch.Tensor], candidates: list) -> tuple:
    # masks of similar area at the same shapes tune alike: bucket each level's area to 10 log-spaced steps
    areas = tuple((res, round(math.log10(max(float(m.float().mean()), 1e-4)) * 10)) for res, m in sorted(masks.items()))
    cands = tuple(tuple(sorted(c.items())) for c in candidates)
    return type(model).__qualname__, areas, torch.get_num_threads(), cands


@torch.no_grad()
def autotune_block_sizes(
    model: SIGEModel,
    run: Callable[[], object],
    masks: Mapping[tuple[int, int], torch.Tensor],
    candidates: Iterable[Mapping[int, int]],
    repeats: int = 3,
    block_grid: str = "trimmed",
    use_cache: bool = True,
) -> tuple[dict[int, int], list[tuple[dict[int, int], float]]]:
    """Time ``run()`` (a sparse forward) for each candidate size map; keep the fastest.

    The model must have had its full pass; it is left with the best sizes and their masks set.
    Returns the best map and every (map, median ms) tried. Results are cached per model class, mask
    shapes, area bucket and thread count (``use_cache=False`` re-measures).
    """
    candidates = [dict(c) for c in candidates]
    key = _tuning_key(model, masks, candidates)
    if use_cache and key in _TUNED:
        set_block_sizes(model, _TUNED[key])
        model.set_masks(masks, block_grid=block_grid)
        return dict(_TUNED[key]), []
    tried: list[tuple[dict[int, int], float]] = []
    for sizes in candidates:
        set_block_sizes(model, sizes)
        model.set_masks(masks, block_grid=block_grid)
        run()  # warm-up (first call also allocates working buffers)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1e3)
        tried.append((dict(sizes), sorted(times)[len(times) // 2]))
    best = min(tried, key=lambda t: t[1])[0]
    _TUNED[key] = dict(best)
    set_block_sizes(model, best)
    model.set_masks(masks, block_grid=block_grid)
    return best, tried
