"""DRN-D-105 (key layout, fixed upsampling), the mIoU arithmetic and the quality task's plumbing."""

import numpy as np
import pytest
import torch

from gaugan.drn import DRNSeg, confusion, load_drn, miou, predict
from sigebench.jobs import compose_job
from sigebench.results import ResultsStore
from sigebench.tasks import quality

from .test_inputs import make_dataset

TINY_DRN = {"layers": [1, 1, 1, 1, 1, 1, 1, 1], "channels": [4, 4, 4, 4, 4, 4, 8, 8]}


def test_drn_d_105_key_layout(tmp_path):
    with torch.device("meta"):
        sd = DRNSeg().state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    expected = {
        "base.0.0.weight": (16, 3, 7, 7), "base.0.1.running_var": (16,), "base.1.0.weight": (16, 16, 3, 3),
        "base.2.0.weight": (32, 16, 3, 3), "base.3.0.conv1.weight": (64, 32, 1, 1),
        "base.3.0.downsample.0.weight": (256, 32, 1, 1), "base.3.2.conv3.weight": (256, 64, 1, 1),
        "base.4.0.conv2.weight": (128, 128, 3, 3), "base.4.3.bn3.bias": (512,),
        "base.5.0.downsample.1.weight": (1024,), "base.5.22.conv3.weight": (1024, 256, 1, 1),
        "base.6.0.downsample.0.weight": (2048, 1024, 1, 1), "base.6.2.bn3.weight": (2048,),
        "base.7.0.weight": (512, 2048, 3, 3), "base.8.0.weight": (512, 512, 3, 3), "base.8.1.running_mean": (512,),
        "seg.weight": (19, 512, 1, 1), "seg.bias": (19,), "up.weight": (19, 1, 16, 16),
    }  # fmt: skip
    for k, shape in expected.items():
        assert shapes.get(k) == shape, k
    assert {k.split(".")[1] for k in sd if k.startswith("base.")} == {str(i) for i in range(9)}
    assert "base.5.23.conv1.weight" not in sd and "base.4.1.downsample.0.weight" not in sd
    # dilations: stage 5 dilation 2, stage 6 dilation 4, stage 7 dilation 2 (output stride 8)
    model = DRNSeg(**TINY_DRN)
    assert model.base[5][0].conv2.dilation == (2, 2) and model.base[6][0].conv2.dilation == (4, 4)
    assert model.base[7][0].dilation == (2, 2) and model.base[4][0].conv2.stride == (2, 2)
    # a state dict saved with DataParallel's prefix loads
    released = {k: torch.rand(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save({"module." + k: v for k, v in released.items()}, tmp_path / "drn.pth")
    loaded = load_drn(tmp_path / "drn.pth")
    assert torch.equal(loaded.seg.weight, released["seg.weight"]) and loaded.base[0][1].num_batches_tracked == 0
    torch.save({"seg.weight": released["seg.weight"]}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a DRN-D-105"):
        load_drn(tmp_path / "bad.pth")


def test_fixed_bilinear_upsampling_and_prediction_shape():
    model = DRNSeg(**TINY_DRN).eval()
    with torch.no_grad():
        y = model.up(torch.ones(1, 19, 8, 8))
    assert y.shape == (1, 19, 64, 64)
    torch.testing.assert_close(y[..., 8:-8, 8:-8], torch.ones_like(y[..., 8:-8, 8:-8]))
    pred = predict(model, np.zeros((64, 128, 3), np.uint8))
    assert pred.shape == (1, 64, 128) and pred.max() < 19
    with pytest.raises(ValueError, match="multiples of 8"):
        predict(model, np.zeros((60, 128, 3), np.uint8))


def test_confusion_and_miou():
    pred, label = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 255])
    hist = confusion(pred, label)
    assert hist[0, 0] == 1 and hist[1, 0] == 1 and hist[1, 1] == 1 and hist.sum() == 3
    value, per_class = miou(hist)
    assert value == pytest.approx(50.0) and np.isnan(per_class[2])
    assert confusion(pred, label, mask=np.array([1, 0, 1, 1], bool)).sum() == 2
    # accumulating over images is one matrix, not a mean of per-image mIoUs
    total = confusion([0, 0], [0, 0]) + confusion([1], [0])
    assert miou(total)[0] == pytest.approx(100 * 2 / 3 / 2)


def compose_quality(tmp_path, *extra):
    return compose_job([
        "task=quality", "model=gaugan_cityscapes", "edit=cityscapes_edit", f"edit.root={tmp_path / 'ds'}",
        "model.ngf=2", "model.crop_size=64", "model.aspect_ratio=1", "threads=1",
        f"task.out_dir={tmp_path / 'q'}", f"task.output={tmp_path / 'q.csv'}", *extra,
    ])  # fmt: skip


@pytest.fixture
def tiny_drn(tmp_path, monkeypatch):
    """An untrained tiny DRN stands in for DRN-D-105 (the mIoU plumbing, not its value)."""
    import gaugan.drn
    import gaugan.family

    monkeypatch.setattr(gaugan.family, "drn_weights", lambda given: tmp_path / "drn.pth")
    monkeypatch.setattr(gaugan.drn, "load_drn", lambda path, device="cpu": DRNSeg(**TINY_DRN).eval())


def test_quality_task_plumbing(tmp_path, tiny_drn):
    make_dataset(tmp_path / "ds", n=2)
    for p in (tmp_path / "ds").glob("*labels/*.npy"):  # 64x64 maps with two classes each
        a = np.load(p)
        np.save(p, np.pad(np.full((64, 32), a[0, 0]), ((0, 0), (0, 32)), constant_values=23))
    for p in (tmp_path / "ds").glob("*instances/*.npy"):
        np.save(p, np.full((64, 64), 1, np.int32))
    # (FID is sigebench.metrics.fid on the folders; an Inception pass is too slow for a unit test)
    rows = quality(compose_quality(tmp_path, "task.metrics=[miou,psnr]", "task.allow_random_weights=true"))
    # no real photos in this set: PSNR compares with the dense generator only
    assert [(r["variant"], r["metric"], r["reference"]) for r in rows] == [
        ("sige", "psnr", "original"), ("original", "miou", "edited labels"), ("sige", "miou", "edited labels"),
    ]  # fmt: skip
    assert all(r["count"] == 4 for r in rows)  # 2 rows x symmetric editing
    assert rows[0]["value"] > 10 and 0 <= rows[1]["value"] <= 100 and rows[1]["random_weights"]
    images = rows[0]["images"]
    assert sorted(p.name for p in (tmp_path / "q" / "gaugan_cityscapes").glob("*/sige/*")) == [
        "1000_gt.png", "1000_synthetic.png", "1001_gt.png", "1001_synthetic.png"]  # fmt: skip
    assert len(ResultsStore(tmp_path / "q.csv").rows()) == 3
    # mIoU inside the set's masks (images are reused)
    for i in range(2):
        np.save(tmp_path / "ds" / "masks" / f"{1000 + i}.npy", np.pad(np.ones((8, 8), bool), ((0, 56), (0, 56))))
    masked = quality(compose_quality(tmp_path, "task.metrics=[miou]", "task.masked=true",
                                     "task.allow_random_weights=true"))  # fmt: skip
    assert [r["masked"] for r in masked] == [True, True] and 0 < masked[0]["pixels"] < rows[1]["pixels"]
    assert masked[0]["images"] == images


def test_missing_weights_and_random_weights_are_refused_up_front(tmp_path, monkeypatch):
    from sigebench.config import ConfigError

    monkeypatch.setenv("SIGE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SIGE_DATA_MIRROR", str(tmp_path / "no-mirror"))
    make_dataset(tmp_path / "ds", n=1)
    with pytest.raises(FileNotFoundError, match="fused_spade.pth"):
        quality(compose_quality(tmp_path, "weights=pretrained", "task.metrics=[miou,psnr]"))
    with pytest.raises(ConfigError, match="random weights"):
        quality(compose_quality(tmp_path, "task.metrics=[psnr]"))
    with pytest.raises(FileNotFoundError, match="DRN-D-105"):
        quality(compose_quality(tmp_path, "task.metrics=[miou]", "task.allow_random_weights=true"))
    assert not (tmp_path / "q").exists()
