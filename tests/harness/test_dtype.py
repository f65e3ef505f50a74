"""Reduced precision in the benchmark: refused where the CPU would emulate it; measured against float32."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from sigebench import config
from sigebench.config import ConfigError, check_cpu_dtype
from sigebench.engine_family import prepare
from sigebench.table import render_table
from sigebench.variants import Timing, measure_variants


def test_bfloat16_is_refused_on_a_cpu_without_native_support(monkeypatch):
    monkeypatch.setattr("sigebench.provenance.cpu_features", lambda: "avx2 avx512f fma")
    with pytest.raises(ConfigError, match=r"dtype=bfloat16 on this CPU: it has none of avx512_bf16, amx_bf16"):
        check_cpu_dtype("bfloat16")
    with pytest.raises(ConfigError, match="dtype=float16 on this CPU"):
        check_cpu_dtype("float16")
    monkeypatch.setattr("sigebench.provenance.cpu_features", lambda: "avx2 avx512f avx512_bf16")
    check_cpu_dtype("bfloat16")
    assert set(config.NATIVE_CPU_DTYPE) == {"bfloat16", "float16"}


def test_bfloat16_rows_carry_their_distance_to_float32():
    edit = {"name": "synthetic", "kind": "synthetic", "area": 0.05, "seed": 0, "families": ["all"]}
    case = prepare({"name": "engine_conv", "family": "engine", "resolution": [64, 64]}, edit, "conv", "cpu",
                   torch.float32, None)  # fmt: skip
    rows = measure_variants(case.model, case.original, case.edited, case.masks, ["original", "sige", "sige_fast"],
                            Timing(enabled=False), "cpu", dtype=torch.bfloat16)  # fmt: skip
    assert next(case.model.parameters()).dtype == torch.bfloat16
    psnr = [r["psnr_vs_float32_db"] for r in rows]
    assert all(p is not None and 35 < p < 120 for p in psnr), psnr  # bfloat16 rounding, not noise, not exact
    assert math.isclose(psnr[1], psnr[0], abs_tol=1.0)  # the sparse pass adds nothing to the rounding
    f32 = measure_variants(case.model.float(), case.original, case.edited, case.masks, ["original"],
                           Timing(enabled=False), "cpu")  # fmt: skip
    assert "psnr_vs_float32_db" not in f32[0] and f32[0]["macs"] == rows[0]["macs"]


def test_table_puts_reduced_precision_beside_float32():
    common = {"model": "m", "component": "c", "edit": "e", "device": "cpu", "threads": 2, "edited_fraction": 0.1,
              "backend": "native", "timestamp": "t", "macs": 10}  # fmt: skip
    rows = pd.DataFrame([
        {**common, "variant": "original", "dtype": "float32", "latency_ms": 10.0},
        {**common, "variant": "sige", "dtype": "float32", "latency_ms": 4.0},
        {**common, "variant": "original", "dtype": "bfloat16", "latency_ms": 5.0, "psnr_vs_float32_db": 60.0},
        {**common, "variant": "sige", "dtype": "bfloat16", "latency_ms": 2.5, "psnr_vs_float32_db": 59.5},
    ])  # fmt: skip
    text = render_table(rows, pd.DataFrame(columns=["model", "case", "variant", "macs_g", "device", "latency"]), {})
    section = text.split("## Reduced precision beside float32", 1)[1]
    assert "| m | c | e | sige | bfloat16 | 2.50 | 4.00 | 1.60x | 2.00x | 59.5 |" in section


def test_reproduce_skips_jobs_whose_needs_this_machine_lacks(monkeypatch):
    from sigebench.jobs import load_jobs
    from sigebench.reproduce import runnable

    jobs = load_jobs("reproduce", ["bfloat16"])
    monkeypatch.setattr("sigebench.provenance.cpu_features", lambda: "avx2 avx512f avx512_bf16")
    assert runnable(jobs) == (jobs, [])
    monkeypatch.setattr("sigebench.provenance.cpu_features", lambda: "avx2")
    keep, unmet = runnable(jobs)
    assert keep == [] and len(unmet) == len(jobs) and "none of avx512_bf16, amx_bf16" in unmet[0][1]
    with pytest.raises(ValueError, match="unknown needs: 'gpu'"):
        runnable([{**jobs[0], "needs": "gpu"}])
