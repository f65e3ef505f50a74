"""The GPU check refuses to pass where it cannot test the CUDA kernels (it fails, never skips)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

TOOL = Path(__file__).resolve().parents[1] / "tools" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine run the check itself (make gpu-check)")
def test_gpu_check_fails_without_a_gpu(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", TOOL)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.main([str(tmp_path / "log")]) == 1
    summary = (tmp_path / "log" / "summary.txt").read_text()
    assert "RESULT: FAIL" in summary and ("no GPU" in summary or "CPU-only" in summary)
    assert f"torch {torch.__version__}" in (tmp_path / "log" / "environment.txt").read_text()
