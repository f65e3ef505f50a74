"""task=memory: the benchmark's peak-memory figure against a fresh process's resident-set growth."""

from __future__ import annotations

import sys

import pytest

from sigebench import memory as mem
from sigebench.config import ConfigError
from sigebench.jobs import compose_job
from sigebench.results import ResultsStore

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the resident set is read from /proc (Linux)")


def test_peak_memory_agrees_with_resident_set_growth_and_rows_are_reused(tmp_path, capsys):
    out = tmp_path / "memory.csv"
    overrides = ["task=memory", "model=engine_conv", "edit=engine_example", f"task.output={out}", "threads=1"]
    rows = mem.memory(compose_job(overrides))
    assert [r["variant"] for r in rows] == ["original", "sige", "sige_fast"]
    dense = rows[0]
    # one forward of the 16->32 conv at 256x256 allocates its output (32 x 256 x 256 float32 = 8 MiB) at least
    assert dense["peak_mem_mb"] >= 8.0
    assert 0.8 <= dense["rss_growth_mb"] / dense["peak_mem_mb"] <= 1.25, dense
    for r in rows[1:]:  # sparse: small block buffers, caches held by the session
        assert r["cache_mb"] > 0 and r["peak_mem_mb"] < dense["peak_mem_mb"] and r["rss_growth_mb"] >= 0
    assert all(r["machine"] and r["code_version"] for r in rows)
    again = mem.memory(compose_job(overrides))  # same settings, code and machine: reused
    assert [r["row_id"] for r in again] == [r["row_id"] for r in ResultsStore(out).rows()]
    text = "\n".join(mem.memory_section(ResultsStore(out).frame()))
    assert "Peak memory checked against the resident set" in text and "| engine_example_conv | conv |" in text


def test_memory_check_refuses_cuda_and_unknown_settings(tmp_path):
    cfg = compose_job(["task=memory", "model=engine_conv", "device=cuda", f"task.output={tmp_path / 'm.csv'}"])
    with pytest.raises(ConfigError, match="task=memory checks CPU figures"):
        mem.memory(cfg)
    from sigebench.config import plain, validate

    bad = plain(compose_job(["task=memory", "model=engine_conv", "+task.timeout=5"]))
    with pytest.raises(ConfigError, match="task.timeout"):
        validate(bad)


def test_a_child_that_runs_too_long_is_stopped_with_the_setting_named(tmp_path):
    cfg = compose_job(["task=memory", "model=engine_conv", f"task.output={tmp_path / 'm.csv'}", "task.timeout_s=0.01"])
    with pytest.raises(RuntimeError, match="task.timeout_s=0.01"):
        mem.memory(cfg)
