"""The engine on the paper's example mask, and the measuring and edit helpers of the harness."""

import numpy as np
import torch
from torchprofile import profile_macs

from sige import mask as M
from sige.example import ExampleModel
from sigebench.data import data_path
from sigebench.edits import synthetic_stroke_mask
from sigebench.variants import Timing, measure_variants


def example_mask() -> np.ndarray:
    return np.load(data_path("example_edits", "engine/mask.npy"))


def test_reduce_mask_paper_example_count():
    mask = torch.from_numpy(example_mask())
    assert M.reduce_mask(mask, 6, 4, 1, block_grid="original").shape[0] == 783  # the notebook: 783 of 4225 blocks
    assert M.reduce_mask(mask, 6, 4, 1).shape[0] == 783 - 44


def test_original_example_flow():
    mask = torch.from_numpy(example_mask())
    original_input = torch.randn((1, 16, 256, 256))
    edited_input = original_input + torch.randn((1, 16, 256, 256)) * mask[None, None]
    model = ExampleModel()
    model.eval()
    with torch.no_grad():
        model.set_mode("full")
        std_output = model(edited_input)
        full_macs = profile_macs(model, (edited_input,))
        model.set_mode("full")
        model(original_input)
        model.set_mode("sparse")
        model.set_masks({(256, 256): mask}, block_grid="original")
        sige_output = model(edited_input)
        model.set_mode("profile")
        sige_macs = profile_macs(model, (edited_input,))
    assert torch.isclose(std_output, sige_output, atol=1e-4).all()
    assert round(full_macs / 1e6, 2) == 301.99
    assert round(sige_macs / 1e6, 2) == 57.73


def test_measure_variants_rows_and_csv(tmp_path):
    model = ExampleModel().eval()
    mask = torch.from_numpy(synthetic_stroke_mask(64, 64, 0.02, seed=0))
    x0 = torch.randn(1, 16, 64, 64)
    x1 = x0 + torch.randn(1, 16, 64, 64) * mask
    rows = measure_variants(model, (x0,), (x1,), {(64, 64): mask}, timing=Timing(warmup=0, repeats=1))
    by = {r["variant"]: r for r in rows}
    assert by["original"]["macs"] == 32 * 16 * 9 * 64 * 64
    assert by["sige_fast"]["macs"] <= by["sige"]["macs"] < by["original"]["macs"]
    assert 0 < by["sige_fast"]["active_fraction"] < 1


def test_synthetic_stroke_mask_area_and_determinism():
    for area in (0.005, 0.012, 0.05, 0.3):
        m = synthetic_stroke_mask(256, 256, area, seed=3)
        assert abs(m.mean() - area) < max(0.25 * area, 0.003)
    assert np.array_equal(synthetic_stroke_mask(64, 80, 0.1, 7), synthetic_stroke_mask(64, 80, 0.1, 7))
    assert not synthetic_stroke_mask(32, 32, 0.0).any() and synthetic_stroke_mask(32, 32, 1.0).all()
