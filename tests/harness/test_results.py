"""Results storage: atomic shards that concurrent and killed jobs cannot corrupt; numbers stay numbers."""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from sigebench.results import ResultsError, ResultsStore, import_csv

ROOT = Path(__file__).resolve().parents[2]


def test_shards_round_trip_types_and_ignore_unfinished_writes(tmp_path):
    store = ResultsStore(tmp_path / "eff.csv")
    store.write([{"model": "m", "macs": 301989888, "latency_ms": 14.3469, "weights": "random", "x": None}])
    (store.shards / ".20260101T000000-dead.jsonl.tmp").write_text('{"model": "half')  # a killed writer's leftover
    rows = store.rows()
    assert len(rows) == 1 and rows[0]["macs"] == 301989888 and rows[0]["latency_ms"] == 14.3469
    store.export_csv()
    assert pd.read_csv(tmp_path / "eff.csv")["macs"].tolist() == [301989888]
    store.write([{"model": "m", "macs": 1, "new_column": 7}])  # a new column never rewrites earlier shards
    assert [r.get("new_column") for r in store.rows()] == [None, 7]
    assert len(store.shard_paths()) == 2


def test_a_damaged_shard_is_named(tmp_path):
    store = ResultsStore(tmp_path / "eff.csv")
    path = store.write([{"model": "m"}])
    path.write_text(path.read_text() + '{"model": \n')
    with pytest.raises(ResultsError, match=f"{path.name} line 2"):
        store.rows()


def test_concurrent_writers_keep_every_row(tmp_path):
    store = ResultsStore(tmp_path / "eff.csv")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: (store.write([{"job": i, "k": j} for j in range(5)]), store.export_csv()), range(40)))
    rows = store.rows()
    assert len(rows) == 200 and {(r["job"], r["k"]) for r in rows} == {(i, j) for i in range(40) for j in range(5)}
    store.export_csv()
    assert len(pd.read_csv(tmp_path / "eff.csv")) == 200


def test_old_csvs_import_with_numbers_and_text_kept(tmp_path):
    (tmp_path / "old.csv").write_text("model,macs,latency_ms,settings_key,weights\nm,301989888,14.3469,0123,random\n")
    store = ResultsStore(tmp_path / "eff.csv")
    import_csv(tmp_path / "old.csv", store)
    (row,) = store.rows()
    assert row["macs"] == 301989888 and row["latency_ms"] == 14.3469 and row["settings_key"] == "0123"


def test_sigkill_at_any_point_of_a_reproduce_run_loses_no_row(tmp_path):
    """A reproduce run killed with SIGKILL at many points: every earlier row survives, the CSV stays readable,
    and the next run completes the jobs."""
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text("jobs:\n" + "".join(
        f"  - overrides: [model=engine_conv, edit=synthetic, edit.area={a}]\n" for a in (0.01, 0.02, 0.03)
    ))  # fmt: skip
    out = tmp_path / "eff.csv"
    cmd = [sys.executable, str(ROOT / "scripts" / "reproduce_table.py"), "--jobs", str(jobs), "--output", str(out),
           "--table", str(tmp_path / "T.md"), "--force", "timing.warmup=0", "timing.repeats=1",
           "variants=[original,sige]"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    store = ResultsStore(out)
    seen = {r["row_id"] for r in store.rows()}
    assert len(seen) == 6
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    full = time.perf_counter() - start  # how long a whole run takes here: kills are spread over it
    for i in range(8):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(full * (0.15 + 0.11 * i))
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
        rows = store.rows()  # every shard parses
        now = {r["row_id"] for r in rows}
        assert seen <= now, "a killed run lost earlier rows"
        assert all(json.dumps(r) for r in rows) and len(now) % 2 == 0  # whole jobs only (2 variants each)
        seen = now
        if out.exists():
            pd.read_csv(out)  # the derived CSV is always whole (written aside, then renamed)
    subprocess.run([c for c in cmd if c != "--force"], check=True, capture_output=True, timeout=600)
    assert len(store.rows()) >= len(seen)
