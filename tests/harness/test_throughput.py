"""task=throughput: batches of per-sample edits, rows by batch size, the memory stop, reuse of measured rows."""

from __future__ import annotations

import pytest
import torch

from sigebench import throughput as tp
from sigebench.config import ConfigError
from sigebench.engine_family import prepare
from sigebench.jobs import compose_job
from sigebench.results import ResultsStore


def _case():
    edit = {"name": "synthetic", "kind": "synthetic", "area": 0.03, "seed": 1, "families": ["all"]}
    return prepare({"name": "engine_conv", "family": "engine", "resolution": [64, 64]}, edit, "conv", "cpu",
                   torch.float32, None)  # fmt: skip


def test_batches_give_every_sample_its_own_edit():
    case = _case()
    (orig,), (edited,), masks = tp.batch_case(case, 4, own_edits=True)
    assert orig.shape[0] == edited.shape[0] == 4 and torch.equal(orig[1], case.original[0][0])
    (m,) = masks.values()
    assert m.shape == (4, 64, 64) and all(int(m[i].sum()) == int(m[0].sum()) for i in range(4))
    assert not torch.equal(m[0], m[1])  # moved, same area
    for i in range(4):  # each sample differs from the original exactly inside its own mask
        changed = (edited[i] != orig[i]).any(0)
        assert bool((changed <= m[i]).all()) and bool(changed.any())
    (_,), (shared,), masks = tp.batch_case(case, 3, own_edits=False)
    assert all(torch.equal(shared[i], case.edited[0][0]) for i in range(3))


def test_throughput_rows_by_batch_stop_before_memory_runs_out_and_are_reused(tmp_path, monkeypatch, capsys):
    out = tmp_path / "tp.csv"
    overrides = ["task=throughput", "model=engine_conv", "edit=synthetic", "edit.area=0.03", "task.max_batch=4",
                 f"task.output={out}", "timing.warmup=0", "timing.repeats=1", "variants=[original,sige]"]  # fmt: skip
    rows = tp.throughput(compose_job(overrides))
    assert [(r["batch"], r["variant"]) for r in rows] == [(b, v) for b in (1, 2, 4) for v in ("original", "sige")]
    assert all(r["images_per_s"] > 0 and r["peak_mem_mb"] > 0 for r in rows)
    assert all(r["cache_mb"] > 0 for r in rows if r["variant"] == "sige")
    assert len(ResultsStore(out).rows()) == 6
    again = tp.throughput(compose_job(overrides))  # same settings, code and machine: reused, nothing new stored
    assert [r["row_id"] for r in again] == [r["row_id"] for r in ResultsStore(out).rows()]
    monkeypatch.setattr(tp, "available_memory_mb", lambda: 1.0)  # the next batch would not fit
    rows = tp.throughput(compose_job([*overrides, "force=true"]))
    assert {r["batch"] for r in rows} == {1} and all("would need" in r["stopped"] for r in rows)
    assert "Throughput by batch size" in "\n".join(tp.throughput_section(ResultsStore(out).frame()))


@pytest.mark.parametrize(
    ("override", "message"),
    [("timing.enabled=false", "timing.enabled=false makes it meaningless"), ("task.edits=mine", "task.edits"),
     ("task.max_batch=0", "task.max_batch"), ("task.batch_sizes=[2,-1]", "task.batch_sizes")],
)  # fmt: skip
def test_bad_throughput_settings_are_named(tmp_path, override, message):
    cfg = compose_job(["task=throughput", "model=engine_conv", f"task.output={tmp_path / 'tp.csv'}", override])
    with pytest.raises(ConfigError, match=message):
        tp.throughput(cfg)
    assert not (tmp_path / "tp.csv").exists()
