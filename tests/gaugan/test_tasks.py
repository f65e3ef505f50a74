"""The benchmark-contract commands on tiny configurations (random weights, timing off)."""

import numpy as np
import pytest

from sigebench.config import ConfigError
from sigebench.jobs import compose_job
from sigebench.results import ResultsStore
from sigebench.tasks import efficiency, generate

TINY = ["model.ngf=2", "model.crop_size=64", "model.aspect_ratio=1", "timing.enabled=false", "force=true", "threads=1"]


def run(task_overrides, tmp_path, fn=efficiency):
    return fn(compose_job([*task_overrides, f"output={tmp_path / 'eff.csv'}"]))


@pytest.mark.parametrize(
    "model, edit", [("gaugan_cityscapes", "cityscapes_example"), ("gan_compression_cityscapes", "synthetic")]
)
def test_efficiency_rows(model, edit, tmp_path):
    overrides = [f"model={model}", f"edit={edit}", *TINY]
    if model.startswith("gan_"):
        overrides[2] = "model.config_str='2_2_2_3_2_2_2_2'"
    rows = run(["task=efficiency", *overrides], tmp_path)
    assert [r["variant"] for r in rows] == ["original", "sige", "sige_fast"]
    dense, sige, fast = (r["macs"] for r in rows)
    assert 0 < sige < dense and 0 < fast <= dense
    for r in rows:
        assert r["model"] == model and r["component"] == "generator" and r["weights"] == "random"
        assert 0.005 < r["edited_fraction"] < 0.05
    written = ResultsStore(tmp_path / "eff.csv").rows()
    assert len(written) == 3 and written[1]["edited_fraction"] == rows[1]["edited_fraction"]


def test_efficiency_rejects_other_edits_and_components(tmp_path):
    with pytest.raises(ConfigError, match="'engine_example' is not an edit of model 'gaugan_cityscapes'"):
        run(["task=efficiency", "model=gaugan_cityscapes", "edit=engine_example", *TINY], tmp_path)
    with pytest.raises(ConfigError, match="no component 'unet'; its components: generator"):
        run(["task=efficiency", "model=gaugan_cityscapes", "edit=cityscapes_example", "component=unet", *TINY],
            tmp_path)  # fmt: skip
    assert not (tmp_path / "rows").exists()  # nothing was written


def test_generate_writes_images_and_labels(tmp_path):
    out = tmp_path / "gen"
    records = run(["task=generate", "model=gaugan_cityscapes", "edit=cityscapes_example", *TINY,
                   f"task.out_dir={out}"], tmp_path, generate)  # fmt: skip
    from PIL import Image

    folder = out / "gaugan_cityscapes" / "cityscapes_example"
    for sub in ("original", "sige", "original_label", "edited_label"):
        img = np.asarray(Image.open(folder / sub / "cityscapes_example.png"))
        assert img.shape == ((64, 64, 3) if sub in ("original", "sige") else (256, 512, 3)), sub
    assert records[0]["name"] == "cityscapes_example" and records[0]["weights"] == "random"


def test_panel_returns_float_outputs_and_tiles_covering_the_edit():
    """`make figures` panel: float outputs (8-bit images would make the difference map rounding noise)."""
    from sigebench.figures import panel

    p = panel(["model=gan_compression_cityscapes", "edit=cityscapes_example"])
    assert p["dense"].dtype == p["sparse"].dtype == np.float32 and p["dense"].shape == (3, 256, 512)
    assert p["blocks"].shape == p["mask"].shape == (256, 512) and not (p["mask"] & ~p["blocks"]).any()
    diff = np.abs(p["sparse"] - p["dense"]).max(axis=0)
    assert np.isfinite(diff).all() and 0 < diff.max() < np.ptp(p["dense"])  # a float map, not 8-bit levels
