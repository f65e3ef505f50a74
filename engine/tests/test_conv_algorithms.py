"""Per-layer conv algorithms of sparse mode: the GEMM path equals the conv, auto remembers its choice."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import sparse_conv_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sige.nn import SIGEConv2d, conv_algorithms
from sige.nn.conv_algorithms import CHOICES, load_choices, save_choices, set_conv_algorithm
from sige.profile import macs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 5),
    c=st.integers(1, 9),
    co=st.integers(1, 9),
    k=st.sampled_from([1, 2, 3, 5]),
    stride=st.sampled_from([1, 2]),
    dilation=st.sampled_from([1, 2]),
    bias=st.booleans(),
    size=st.integers(5, 12),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
)
def test_gemm_equals_conv(n, c, co, k, stride, dilation, bias, size, dtype):
    if k == 1:
        dilation = 1
    layer = SIGEConv2d(c, co, k, stride=stride, dilation=dilation, bias=bias).to(dtype)
    x = torch.randn(n, c, size, size).to(dtype)
    if dilation * (k - 1) >= size:
        return
    with torch.no_grad():
        want, got = conv_algorithms.conv(layer, x), conv_algorithms.gemm(layer, x)
    assert got.shape == want.shape and got.is_contiguous() and got.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got.float(), want.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("algorithm", ["conv", "gemm", "auto"])
def test_sparse_model_is_dense_with_every_algorithm_and_counts_the_same_macs(algorithm):
    model, x1, dense = sparse_conv_case()
    model.set_mode("profile")
    base_macs = macs(model, (x1,))
    set_conv_algorithm(model, algorithm)
    model.set_mode("sparse")
    with torch.no_grad():
        out = model(x1)
    torch.testing.assert_close(out, dense, rtol=1e-5, atol=1e-5)
    model.set_mode("profile")
    assert macs(model, (x1,)) == base_macs


def test_auto_measures_once_per_shape_and_keeps_the_choice(monkeypatch):
    model, x1, _ = sparse_conv_case()
    set_conv_algorithm(model, "auto")
    CHOICES.clear()
    calls = []
    real = conv_algorithms._time
    monkeypatch.setattr(conv_algorithms, "_time", lambda fns, device, repeats=5: calls.append(sorted(fns))
                        or real(fns, device, 1))  # fmt: skip
    with torch.no_grad():
        model(x1)
        model(x1)
    assert calls == [["conv", "gemm"]] and len(CHOICES) == 1  # both candidates timed once, for the one conv shape
    ((key, choice),) = CHOICES.items()
    assert choice in ("conv", "gemm") and json.loads(key)[0] == "cpu"
    CHOICES[key] = "gemm"  # a remembered choice is used as it is
    ran = []
    monkeypatch.setitem(conv_algorithms.RUN, "gemm", lambda layer, x: ran.append(1) or conv_algorithms.gemm(layer, x))
    with torch.no_grad():
        model(x1)
    assert ran == [1] and len(calls) == 1


@pytest.mark.parametrize(("gemm_s", "expected"), [(0.85, "gemm"), (0.95, "conv"), (1.2, "conv")])
def test_auto_keeps_conv_unless_gemm_is_clearly_faster(monkeypatch, gemm_s, expected):
    model, x1, _ = sparse_conv_case()
    set_conv_algorithm(model, "auto")
    CHOICES.clear()
    monkeypatch.setattr(conv_algorithms, "_time", lambda fns, device, repeats=5: {"conv": 1.0, "gemm": gemm_s})
    with torch.no_grad():
        model(x1)
    assert list(CHOICES.values()) == [expected]


def test_candidates_are_timed_in_alternation():
    order = []
    fns = {"conv": lambda: order.append("conv"), "gemm": lambda: order.append("gemm")}
    out = conv_algorithms._time(fns, torch.device("cpu"), repeats=3)
    assert set(out) == {"conv", "gemm"} and all(t >= 0 for t in out.values())
    assert order == ["conv", "gemm"] * 4  # warm-up, then 3 alternating rounds


def test_choices_persist_per_machine(tmp_path, monkeypatch):
    CHOICES.clear()
    CHOICES["k"] = "gemm"
    save_choices(tmp_path / "tuning.json")
    CHOICES.clear()
    assert load_choices(tmp_path / "tuning.json") == 1 and CHOICES == {"k": "gemm"}
    CHOICES.clear()
    monkeypatch.setattr(conv_algorithms, "_machine", lambda: "another-machine")
    assert load_choices(tmp_path / "tuning.json") == 0 and CHOICES == {}
    assert load_choices(tmp_path / "missing.json") == 0
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        load_choices(tmp_path / "bad.json")


def test_unknown_algorithm_is_refused_and_grouped_convs_keep_the_conv():
    layer = SIGEConv2d(4, 4, 3, groups=4)
    model = torch.nn.Sequential(layer)
    with pytest.raises(ValueError, match="unknown conv algorithm 'fft'"):
        set_conv_algorithm(model, "fft")
    set_conv_algorithm(model, "gemm")
    assert layer.algorithm == "conv"
    assert conv_algorithms.candidates(layer) == ("conv",)


def test_auto_does_not_rebuild_the_key_on_every_call(monkeypatch):
    model, x1, _ = sparse_conv_case()
    set_conv_algorithm(model, "auto")
    CHOICES.clear()
    keys = []
    real = conv_algorithms.layer_key
    monkeypatch.setattr(conv_algorithms, "layer_key", lambda layer, x: keys.append(1) or real(layer, x))
    with torch.no_grad():
        first = model(x1).clone()
        n = len(keys)
        again = model(x1)
    assert n >= 1 and len(keys) == n  # the second pass used each layer's remembered choice
    torch.testing.assert_close(again, first)
