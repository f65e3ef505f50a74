"""Edit cases shared by the benchmarks: synthetic brush strokes of a requested area."""

from __future__ import annotations

import math

import numpy as np


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
