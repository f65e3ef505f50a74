"""Generator inputs, edit masks, labels and the dataset reader."""

import numpy as np
import pytest
import torch

from gaugan.data import CityscapesEditDataset
from gaugan.family import example_sample
from gaugan.inputs import edit_masks, instance_edges, paint_stroke, semantics
from gaugan.labels import COLORS, TRAIN_ID, colorize, to_train_ids


def test_semantics_one_hot_and_edges():
    label = torch.tensor([[7, 7, 26], [7, 26, 26]])
    inst = torch.tensor([[7, 7, 26001], [7, 26002, 26001]])
    sem = semantics(label, inst)
    assert sem.shape == (1, 36, 2, 3)
    assert torch.equal(sem[0, :35].argmax(0), label) and torch.equal(sem[0, :35].sum(0), torch.ones(2, 3))
    # edge where a 4-neighbour has another instance id (computed by brute force)
    expect = torch.zeros(2, 3)
    for i in range(2):
        for j in range(3):
            for di, dj in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                a, b = i + di, j + dj
                if 0 <= a < 2 and 0 <= b < 3 and inst[a, b] != inst[i, j]:
                    expect[i, j] = 1
    assert torch.equal(sem[0, 35], expect)
    assert torch.equal(instance_edges(inst.numpy())[0, 0], expect)
    assert semantics(label).shape == (1, 35, 2, 3)


def test_bad_labels_are_explained():
    with pytest.raises(ValueError, match="0..34"):
        semantics(torch.tensor([[35]]))
    with pytest.raises(TypeError, match="integer"):
        semantics(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="match"):
        semantics(torch.zeros(2, 2, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long))


def test_example_masks_are_the_papers_1_18_percent():
    ex = example_sample()
    o = semantics(ex.original_label, ex.original_instance)
    e = semantics(ex.edited_label, ex.edited_instance)
    m = edit_masks(o, e)
    assert m.mask.shape == (256, 512) and round(m.edited_fraction, 4) == 0.0118
    assert round(m.raw_fraction, 4) == 0.0106
    assert list(m.pyramid) == [(256 >> i, 512 >> i) for i in range(7)]  # down to the 4x8 latent map
    # every level dilated (cross) from the bilinear pyramid: it covers the downsampled raw change
    for (h, _), level in m.pyramid.items():
        s = 256 // h
        coarse = torch.nn.functional.max_pool2d(m.mask.float()[None, None], s)[0, 0] > 0 if s > 1 else m.mask
        assert level.float().mean() >= 0.5 * coarse.float().mean()
    reverse = example_sample(reverse=True)
    assert np.array_equal(reverse.edited_label, ex.original_label)


def test_paint_stroke_changes_the_stroke_only():
    ex = example_sample()
    stroke = np.zeros(ex.original_label.shape, bool)
    stroke[100:120, 200:260] = True
    lab, inst = paint_stroke(ex.original_label, ex.original_instance, stroke)
    assert (lab[stroke] != ex.original_label[stroke]).mean() > 0.9
    assert np.array_equal(lab[~stroke], ex.original_label[~stroke])
    assert len(np.unique(inst[stroke])) == 1


def test_labels_table():
    assert TRAIN_ID[7] == 0 and TRAIN_ID[33] == 18 and TRAIN_ID[0] == 255 and (TRAIN_ID != 255).sum() == 19
    assert tuple(COLORS[26]) == (0, 0, 142)
    assert colorize(np.array([[7, 23]])).tolist() == [[[128, 64, 128], [70, 130, 180]]]
    assert to_train_ids(np.array([24, 34])).tolist() == [11, 255]
    with pytest.raises(ValueError, match="label ids"):
        to_train_ids(np.array([40]))


def make_dataset(root, n=3):
    (root / "images").mkdir(parents=True)
    for sub in ("gt_labels", "gt_instances", "synthetic_labels", "synthetic_instances", "masks"):
        (root / sub).mkdir()
    rows = ["gt_id,synthetic_id"]
    for i in range(n):
        gt, syn = f"frankfurt_{i:06d}", f"{1000 + i}"
        rows.append(f"{gt},{syn}")
        np.save(root / "gt_labels" / f"{gt}.npy", np.full((4, 8), i, np.int64))
        np.save(root / "gt_instances" / f"{gt}.npy", np.full((4, 8), i, np.int32))
        np.save(root / "synthetic_labels" / f"{syn}.npy", np.full((4, 8), 10 + i, np.int64))
        np.save(root / "synthetic_instances" / f"{syn}.npy", np.full((4, 8), 10 + i, np.int32))
    (root / "meta.csv").write_text("\n".join(rows) + "\n")


def test_dataset_symmetric_editing_and_image_ids(tmp_path):
    make_dataset(tmp_path)
    ds = CityscapesEditDataset(tmp_path)
    assert len(ds) == 6
    names = [s.name for s in ds]
    assert names == ["1000_synthetic", "1001_synthetic", "1002_synthetic", "1000_gt", "1001_gt", "1002_gt"]
    s, r = ds[1], ds[4]
    assert s.original_label[0, 0] == 1 and s.edited_label[0, 0] == 11 and s.direction == "gt_to_synthetic"
    assert r.original_label[0, 0] == 11 and r.edited_label[0, 0] == 1 and r.edited_is_gt
    assert s.image_path == tmp_path / "images" / "frankfurt_000001.png" and s.image_id == 1
    one = CityscapesEditDataset(tmp_path, image_ids=[2], symmetric=False)
    assert len(one) == 1 and one[0].name == "1002_synthetic" and one[0].image_id == 2
    with pytest.raises(ValueError, match="rows of meta.csv"):
        CityscapesEditDataset(tmp_path, image_ids=[3])
    with pytest.raises(FileNotFoundError, match="meta.csv"):
        CityscapesEditDataset(tmp_path / "images")
