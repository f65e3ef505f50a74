"""Bad input gets a clear error naming the setting or file, before any row is written; nothing is lost."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra.errors import HydraException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf.errors import OmegaConfBaseException
from PIL import Image

from sigebench.config import ConfigError
from sigebench.edits import EditError
from sigebench.errors import USER_ERRORS
from sigebench.jobs import compose_job
from sigebench.results import ResultsStore
from sigebench.tasks import efficiency

ROOT = Path(__file__).resolve().parents[2]
BASE = ["model=engine_conv", "edit=synthetic", "edit.area=0.01", "model.resolution=[32,32]", "timing.enabled=false",
        "variants=[original,sige]"]  # fmt: skip

# Invalid values for each setting of the efficiency task (the key the error must name -> values).
INVALID = {
    "threads": ["0", "-1", "abc", "1.5", "true"],
    "dtype": ["float64", "int8", "half32"],
    "component": ["unet", "decoder", "text"],
    "variants": ["[dense]", "[]", "[sige,faster]"],
    "timing.repeats": ["0", "-3", "abc"],
    "timing.warmup": ["-1", "x"],
    "timing.max_time_s": ["-1"],
    "edit.area": ["-0.5", "1.5", "nan", "inf", "abc"],
    "edit.seed": ["abc", "1.5"],
    "weights": ["/nonexistent/ckpt.pth", "pretrained"],
    "device": ["tpu", "cuda"],
    "+timming.repeats": ["2"],
    "+edit.aera": ["0.1"],
    "+model.resolutoin": ["[8,8]"],
}
COMPOSE_ERRORS = (HydraException, OmegaConfBaseException)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_invalid_settings_fail_naming_the_key_and_write_nothing(tmp_path, data):
    key = data.draw(st.sampled_from(sorted(INVALID)), label="key")
    value = data.draw(st.sampled_from(INVALID[key]), label="value")
    out = tmp_path / f"{abs(hash((key, value)))}.csv"
    parts = key.lstrip("+").split(".")
    # the message names the setting: a new (misspelled) key by its own name, an existing one by its last part
    name = parts[-1] if not key.startswith("+") else next(p for p in parts if p not in ("model", "edit", "timing"))
    try:
        cfg = compose_job([*BASE, f"{key}={value}", f"output={out}"])
        efficiency(cfg)
    except COMPOSE_ERRORS as e:
        assert name in str(e), (key, value, str(e)[:300])
    except USER_ERRORS as e:
        assert name.split("_")[0] in str(e), (key, value, str(e))
    else:
        pytest.fail(f"{key}={value} ran without an error")
    assert not ResultsStore(out).shard_paths(), "a refused run wrote rows"


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(area=st.floats(0.0, 1.0), seed=st.integers(0, 99), threads=st.integers(1, 2))
def test_valid_settings_write_correctly_labelled_rows(tmp_path, area, seed, threads):
    out = tmp_path / f"{area}-{seed}-{threads}.csv"
    rows = efficiency(compose_job([*BASE, f"edit.area={area}", f"edit.seed={seed}", f"threads={threads}",
                                   f"output={out}"]))  # fmt: skip
    assert [r["variant"] for r in rows] == ["original", "sige"]
    for r in rows:
        assert r["edit"] == f"synthetic@{area}" and r["threads"] == threads and r["component"] == "conv"
        assert abs(r["edited_fraction"] - area) <= max(0.25 * area, 0.01)
    stored = [{k: v for k, v in r.items() if k != "row_id"} for r in ResultsStore(out).rows()]
    assert stored == rows  # what was printed is what was stored, types included


def test_model_and_edit_of_different_families_are_named_together(tmp_path):
    with pytest.raises(ConfigError, match="'church_example' is not an edit of model 'engine_example_conv'"):
        efficiency(compose_job(["model=engine_conv", "edit=church_example", f"output={tmp_path / 'e.csv'}"]))


def _png(path, h, w):
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)
    return path


def test_custom_edits_refuse_mismatched_sizes_and_name_files(tmp_path):
    from sigebench.edits import load_edit

    a, b = _png(tmp_path / "a.png", 32, 32), _png(tmp_path / "b.png", 32, 40)
    np.save(tmp_path / "m.npy", np.ones((7, 9), bool))
    with pytest.raises(EditError, match=r"edit.original 32x32, edit.edited 32x40"):
        load_edit({"name": "custom", "kind": "custom", "original": str(a), "edited": str(b)})
    with pytest.raises(EditError, match=r"edit.mask 7x9"):
        load_edit(
            {"name": "custom", "kind": "custom", "original": str(a), "edited": str(a), "mask": str(tmp_path / "m.npy")}
        )
    with pytest.raises(EditError, match=r"edit.edited: .*missing.png does not exist"):
        load_edit({"name": "custom", "kind": "custom", "original": str(a), "edited": str(tmp_path / "missing.png")})
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EditError, match=r"edit.original: .*obj.npy holds pickled"):
        load_edit({"name": "custom", "kind": "custom", "original": str(tmp_path / "obj.npy"), "edited": str(a)})
    with pytest.raises(ConfigError, match="edit.original is required"):
        efficiency(compose_job(["model=engine_conv", "edit=custom", f"output={tmp_path / 'e.csv'}"]))


def test_gaugan_label_edits_name_what_is_wrong(tmp_path):
    from gaugan.family import edit_samples

    lab = tmp_path / "l.npy"
    np.save(lab, np.zeros((16, 32), np.int64))
    np.save(tmp_path / "small.npy", np.zeros((16, 16), np.int64))
    png = _png(tmp_path / "p.png", 16, 32)
    with pytest.raises(EditError, match=r"edit.original 16x32, edit.edited 16x16"):
        next(
            edit_samples(
                {"name": "custom", "kind": "custom", "original": str(lab), "edited": str(tmp_path / "small.npy")}
            )
        )
    with pytest.raises(EditError, match=r"edit.edited \(label\): expected an integer label-id map .*RGB image"):
        next(edit_samples({"name": "custom", "kind": "custom", "original": str(lab), "edited": str(png)}))


def test_data_root_under_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for root in (blocker, blocker / "sub"):
        env = {**os.environ, "SIGE_DATA": str(root), "SIGE_DATA_MIRROR": os.environ.get("SIGE_DATA_MIRROR", "")}
        p = subprocess.run([sys.executable, "-m", "sigebench.data", "path", "example_edits", "engine/mask.npy"],
                           capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.count("\n") == 1 and str(blocker) in p.stderr


def test_sigint_during_a_reproduce_run_says_what_was_finished(tmp_path):
    jobs = tmp_path / "jobs.yaml"
    # the first job is quick; the others time for 5 s each, so the interrupt lands inside the second one
    slow = ", timing.min_time_s=5"
    jobs.write_text("jobs:\n" + "".join(
        f"  - overrides: [model=engine_conv, edit=synthetic, edit.area={a}{slow if a > 0.01 else ''}]\n"
        for a in (0.01, 0.02, 0.03, 0.04, 0.05)
    ))  # fmt: skip
    out = tmp_path / "eff.csv"
    p = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "reproduce_table.py"), "--jobs", str(jobs), "--output", str(out),
         "--table", str(tmp_path / "T.md"), "timing.warmup=0", "timing.repeats=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    store = ResultsStore(out)
    deadline = time.time() + 300
    while not store.shard_paths() and time.time() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert "interrupted:" in err and "run the same command again to resume" in err
    assert len(store.rows()) >= 3  # the finished job's rows are stored
