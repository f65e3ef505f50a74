"""DRN-D-105 (key layout, fixed upsampling), the mIoU arithmetic and the quality task's plumbing."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from gaugan.drn import DRNSeg, confusion, load_drn, miou, predict
from sige.bench import read_rows
from sige.tasks import model_task

from .test_inputs import make_dataset

CONFIGS = str(Path(__file__).resolve().parents[2] / "configs")
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
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("config", overrides=[
            "task=quality", "model=gaugan_cityscapes", "edit=cityscapes_edit", f"edit.root={tmp_path / 'ds'}",
            "model.ngf=2", "model.crop_size=64", "model.aspect_ratio=1", "threads=1",
            f"model.quality_options.out_dir={tmp_path / 'q'}", f"model.quality_options.csv={tmp_path / 'q.csv'}",
            *extra,
        ])  # fmt: skip


def test_quality_task_plumbing(tmp_path):
    make_dataset(tmp_path / "ds", n=2)
    for p in (tmp_path / "ds").glob("*labels/*.npy"):  # 64x64 maps with two classes each
        a = np.load(p)
        np.save(p, np.pad(np.full((64, 32), a[0, 0]), ((0, 0), (0, 32)), constant_values=23))
    for p in (tmp_path / "ds").glob("*instances/*.npy"):
        np.save(p, np.full((64, 64), 1, np.int32))
    # (FID is sige.metrics.fid on the folders; an Inception pass is too slow for a unit test)
    cfg = compose_quality(tmp_path, "model.quality_options.metrics=[miou,psnr]",
                          "+model.quality_options.allow_random_weights=true",
                          "+model.quality_options.drn_arch.layers=[1,1,1,1,1,1,1,1]",
                          "+model.quality_options.drn_arch.channels=[4,4,4,4,4,4,8,8]")  # fmt: skip
    rows = model_task(cfg)
    assert [(r["variant"], r["metric"]) for r in rows] == [
        ("original_model", "miou"), ("sige", "miou"), ("sige", "psnr")]  # fmt: skip
    assert all(r["count"] == 4 for r in rows)  # 2 rows x symmetric editing
    assert 0 <= rows[0]["value"] <= 100 and rows[2]["value"] > 10
    assert sorted(p.name for p in (tmp_path / "q" / "cityscapes_edit" / "sige").iterdir()) == [
        "1000_gt.png", "1000_synthetic.png", "1001_gt.png", "1001_synthetic.png"]  # fmt: skip
    assert len(read_rows(tmp_path / "q.csv")) == 3
    # mIoU inside the set's masks (images are reused)
    for i in range(2):
        np.save(tmp_path / "ds" / "masks" / f"{1000 + i}.npy", np.pad(np.ones((8, 8), bool), ((0, 56), (0, 56))))
    cfg = compose_quality(tmp_path, "model.quality_options.metrics=[miou]", "model.quality_options.miou_masked=true",
                          "+model.quality_options.allow_random_weights=true",
                          "+model.quality_options.drn_arch.layers=[1,1,1,1,1,1,1,1]",
                          "+model.quality_options.drn_arch.channels=[4,4,4,4,4,4,8,8]")  # fmt: skip
    masked = model_task(cfg)
    assert [r["masked"] for r in masked] == [True, True] and 0 < masked[0]["pixels"] < rows[0]["pixels"]


def test_missing_weights_are_reported_together(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SIGE_DATA_MIRROR", str(tmp_path / "no-mirror"))
    make_dataset(tmp_path / "ds", n=1)
    cfg = compose_quality(tmp_path, "weights=pretrained", "model.quality_options.metrics=[miou,psnr]")
    with pytest.raises(FileNotFoundError) as err:
        model_task(cfg)
    msg = str(err.value)
    assert "generator weights" in msg and "fused_spade.pth" in msg and "DRN-D-105" in msg
    cfg = compose_quality(tmp_path, "model.quality_options.metrics=[psnr]")
    with pytest.raises(FileNotFoundError, match="random weights"):
        model_task(cfg)
