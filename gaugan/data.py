"""The Cityscapes edit benchmark set as original/edited label-map pairs.

Layout of ``cityscapes-edit/`` (manifest ``datasets/cityscapes_edit.yaml``): ``meta.csv`` (a header, then
``gt_id,synthetic_id`` rows; the row index is the image id), ``gt_labels/<gt_id>.npy``,
``gt_instances/<gt_id>.npy``, ``synthetic_labels/<synthetic_id>.npy``, ``synthetic_instances/``,
``images/<gt_id>.png`` (real photos) and ``masks/<synthetic_id>.npy``. Label maps are 256x512 Cityscapes
label ids, instance maps ``class*1000 + k`` for things.

Symmetric editing (the original's default): for N selected rows the set has 2N items, first the N
edits ground truth -> synthetic (named ``<synthetic_id>_synthetic``), then the N reverse edits synthetic ->
ground truth (``<synthetic_id>_gt``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASET = "cityscapes_edit"
FOLDER = "cityscapes-edit"


@dataclass
class EditSample:
    """One edit: original and edited label/instance maps (numpy, [H, W])."""

    name: str
    original_label: np.ndarray
    original_instance: np.ndarray
    edited_label: np.ndarray
    edited_instance: np.ndarray
    image_id: int | None = None
    gt_id: str | None = None
    synthetic_id: str | None = None
    direction: str = "gt_to_synthetic"
    image_path: Path | None = None  # the real photo of the ground-truth labels
    mask_path: Path | None = None
    mask: np.ndarray | None = None  # a user mask replacing the difference mask (custom edits)

    @property
    def edited_is_gt(self) -> bool:
        return self.direction == "synthetic_to_gt"


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} is missing from the dataset folder")
    return np.load(path)


def dataset_root(root: str | Path | None = None) -> Path:
    """The ``cityscapes-edit`` folder: ``root`` if given, else fetched through the manifest (or the mirror).

    Raises :class:`FileNotFoundError` with one clear message when the dataset is not available.
    """
    if root is not None:
        path = Path(root)
        if not (path / "meta.csv").is_file():
            raise FileNotFoundError(f"{path} is not a cityscapes-edit folder (no meta.csv)")
        return path
    from sigebench.data import DataError, data_path

    try:
        return data_path(DATASET, f"{FOLDER}/meta.csv").parent
    except DataError as e:
        raise FileNotFoundError(
            f"the Cityscapes edit set is not available here ({e}). Fetch it with `python -m sigebench.data fetch "
            f"{DATASET}` on a machine with internet access, put the extracted {FOLDER}/ under $SIGE_DATA or "
            f"$SIGE_DATA_MIRROR, or pass edit.root=<folder>"
        ) from e


class CityscapesEditDataset:
    """Edit pairs of the benchmark set, selected by image id (meta.csv row), optionally symmetric."""

    def __init__(self, root: str | Path | None = None, image_ids: Iterable[int] | None = None, symmetric: bool = True):
        self.root = dataset_root(root)
        with open(self.root / "meta.csv", newline="") as f:
            rows = list(csv.reader(f))[1:]
        rows = [r for r in rows if r]
        wanted = None if image_ids is None else [int(i) for i in image_ids]
        if wanted is not None:
            bad = [i for i in wanted if not 0 <= i < len(rows)]
            if bad:
                raise ValueError(f"image ids {bad} are not rows of meta.csv (ids 0..{len(rows) - 1})")
        ids = range(len(rows)) if wanted is None else sorted(set(wanted))
        self.image_ids = list(ids)
        self.pairs = [(rows[i][0].strip(), rows[i][1].strip()) for i in self.image_ids]
        self.symmetric = symmetric

    def __len__(self) -> int:
        return len(self.pairs) * (2 if self.symmetric else 1)

    def __iter__(self) -> Iterator[EditSample]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index: int) -> EditSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"item {index} of a set of {len(self)} edits")
        index %= len(self)
        n = len(self.pairs)
        reverse = index >= n
        k = index - n if reverse else index
        gt_id, syn_id = self.pairs[k]
        r = self.root
        gt = (_load_npy(r / "gt_labels" / f"{gt_id}.npy", "label map"),
              _load_npy(r / "gt_instances" / f"{gt_id}.npy", "instance map"))  # fmt: skip
        syn = (_load_npy(r / "synthetic_labels" / f"{syn_id}.npy", "label map"),
               _load_npy(r / "synthetic_instances" / f"{syn_id}.npy", "instance map"))  # fmt: skip
        original, edited = (syn, gt) if reverse else (gt, syn)
        mask = r / "masks" / f"{syn_id}.npy"
        return EditSample(
            name=f"{syn_id}_{'gt' if reverse else 'synthetic'}",
            original_label=original[0], original_instance=original[1],
            edited_label=edited[0], edited_instance=edited[1],
            image_id=self.image_ids[k], gt_id=gt_id, synthetic_id=syn_id,
            direction="synthetic_to_gt" if reverse else "gt_to_synthetic",
            image_path=r / "images" / f"{gt_id}.png", mask_path=mask if mask.is_file() else None,
        )  # fmt: skip
