"""Cityscapes label ids: names, train ids (19 evaluated classes, 255 = ignore) and colours.

The table is the public Cityscapes label definition (ids 0..33; id 34 is the license plate, whose
official id is -1, kept as the 35th one-hot channel like the original GauGAN code).
"""

from __future__ import annotations

import numpy as np
import torch

IGNORE = 255
# (id, name, train id, RGB colour)
LABELS: tuple[tuple[int, str, int, tuple[int, int, int]], ...] = (
    (0, "unlabeled", IGNORE, (0, 0, 0)),
    (1, "ego vehicle", IGNORE, (0, 0, 0)),
    (2, "rectification border", IGNORE, (0, 0, 0)),
    (3, "out of roi", IGNORE, (0, 0, 0)),
    (4, "static", IGNORE, (0, 0, 0)),
    (5, "dynamic", IGNORE, (111, 74, 0)),
    (6, "ground", IGNORE, (81, 0, 81)),
    (7, "road", 0, (128, 64, 128)),
    (8, "sidewalk", 1, (244, 35, 232)),
    (9, "parking", IGNORE, (250, 170, 160)),
    (10, "rail track", IGNORE, (230, 150, 140)),
    (11, "building", 2, (70, 70, 70)),
    (12, "wall", 3, (102, 102, 156)),
    (13, "fence", 4, (190, 153, 153)),
    (14, "guard rail", IGNORE, (180, 165, 180)),
    (15, "bridge", IGNORE, (150, 100, 100)),
    (16, "tunnel", IGNORE, (150, 120, 90)),
    (17, "pole", 5, (153, 153, 153)),
    (18, "polegroup", IGNORE, (153, 153, 153)),
    (19, "traffic light", 6, (250, 170, 30)),
    (20, "traffic sign", 7, (220, 220, 0)),
    (21, "vegetation", 8, (107, 142, 35)),
    (22, "terrain", 9, (152, 251, 152)),
    (23, "sky", 10, (70, 130, 180)),
    (24, "person", 11, (220, 20, 60)),
    (25, "rider", 12, (255, 0, 0)),
    (26, "car", 13, (0, 0, 142)),
    (27, "truck", 14, (0, 0, 70)),
    (28, "bus", 15, (0, 60, 100)),
    (29, "caravan", IGNORE, (0, 0, 90)),
    (30, "trailer", IGNORE, (0, 0, 110)),
    (31, "train", 16, (0, 80, 100)),
    (32, "motorcycle", 17, (0, 0, 230)),
    (33, "bicycle", 18, (119, 11, 32)),
    (34, "license plate", IGNORE, (0, 0, 142)),
)
NUM_LABELS = len(LABELS)  # 35 one-hot channels
NUM_TRAIN_CLASSES = 19
TRAIN_ID = np.array([t for _, _, t, _ in LABELS], dtype=np.uint8)
COLORS = np.array([c for _, _, _, c in LABELS], dtype=np.uint8)
TRAIN_NAMES = tuple(name for _, name, t, _ in sorted(LABELS, key=lambda r: r[2]) if t != IGNORE)


def _check_ids(label: np.ndarray) -> None:
    if label.size and (label.min() < 0 or label.max() >= NUM_LABELS):
        raise ValueError(
            f"label ids must be Cityscapes label ids 0..{NUM_LABELS - 1}, "
            f"got values {int(label.min())}..{int(label.max())}"
        )


def to_train_ids(label: np.ndarray | torch.Tensor) -> np.ndarray:
    """Label ids -> train ids (0..18, 255 = ignore), as uint8."""
    arr = label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"label map must hold integer label ids, got dtype {arr.dtype}")
    _check_ids(arr)
    return TRAIN_ID[arr]


def colorize(label: np.ndarray | torch.Tensor) -> np.ndarray:
    """Label ids ``[H, W]`` -> Cityscapes colours ``uint8 [H, W, 3]``."""
    arr = label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"colorize expects an integer label map [H, W], got {arr.dtype} {arr.shape}")
    _check_ids(arr)
    return COLORS[arr]
