"""Sparse variants are timed in interleaved rounds (sigebench.variants.timed_rounds)."""

import pytest

from sigebench.variants import Timing, timed_rounds


def _runs(log):
    return {
        name: (lambda name=name: log.append(("set_up", name)), lambda name=name: log.append(("call", name)))
        for name in ("sige", "sige_fast")
    }


def test_rounds_alternate_configurations_and_set_each_up_before_its_calls():
    log = []
    out = timed_rounds(_runs(log), Timing(warmup=2, repeats=3, max_time_s=None), "cpu")
    assert set(out) == {"sige", "sige_fast"}
    assert all(out[n]["latency_ms"] is not None and out[n]["latency_ms_min"] <= out[n]["latency_ms_max"] for n in out)
    rounds = []  # the calls of each set-up, in the order they ran
    for kind, name in log:
        if kind == "set_up":
            rounds.append([name, 0])
        else:
            assert rounds and rounds[-1][0] == name, "a configuration ran without its set-up"
            rounds[-1][1] += 1
    timed_part = rounds[:6]  # 3 rounds x 2 configurations, then one set-up each for the peak-memory pass
    assert [n for n, _ in timed_part] == ["sige", "sige_fast"] * 3
    # first round: warm-up (2) + timed call; later rounds: one untimed call after the switch + the timed one
    assert [c for _, c in timed_part] == [3, 3, 2, 2, 2, 2]


def test_max_time_stops_after_three_rounds():
    log = []
    timed_rounds(_runs(log), Timing(warmup=0, repeats=50, max_time_s=0.0), "cpu")
    assert sum(1 for kind, name in log if kind == "set_up" and name == "sige") == 3 + 1


def test_timing_off_gives_empty_columns_and_runs_nothing():
    log = []
    out = timed_rounds(_runs(log), Timing(enabled=False), "cpu")
    assert log == [] and out["sige"]["latency_ms"] is None


def test_bad_repeats_is_an_error():
    with pytest.raises(ValueError, match="repeats"):
        timed_rounds(_runs([]), Timing(repeats=0), "cpu")


def test_dense_repeats_are_split_around_the_sparse_rounds(monkeypatch):
    """With sparse variants, half the dense calls are timed before their rounds and the rest after them."""
    import torch

    from sigebench import variants as V

    calls = []
    real_rounds = V.timed_rounds

    def rounds(runs, timing, device):
        calls.append("sparse rounds")
        return real_rounds(runs, timing, device)

    def dense_calls(fn, timing, device, count, warmup):
        calls.append(("dense", count))
        return [1.0] * count

    monkeypatch.setattr(V, "timed_rounds", rounds)
    monkeypatch.setattr(V, "timed_calls", dense_calls)
    from sigebench.engine_family import prepare

    edit = {"name": "synthetic", "kind": "synthetic", "area": 0.03, "seed": 1, "families": ["all"]}
    case = prepare({"name": "engine_conv", "family": "engine", "resolution": [64, 64]}, edit, "conv", "cpu",
                   torch.float32, None)  # fmt: skip
    rows = V.measure_variants(case.model, case.original, case.edited, case.masks, timing=Timing(warmup=0, repeats=5))
    assert calls == [("dense", 3), "sparse rounds", ("dense", 2)]
    assert rows[0]["latency_ms"] == 1.0 and rows[0]["peak_mem_mb"] is not None
    calls.clear()
    V.measure_variants(case.model, case.original, case.edited, case.masks, ["original"], Timing(warmup=0, repeats=5))
    assert calls == [("dense", 5)]
