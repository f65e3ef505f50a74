"""Results storage that concurrent and killed jobs cannot corrupt.

Every job writes its rows as one JSON-lines *shard*, written to a hidden temporary file in the shard folder,
fsynced and renamed into place (``os.replace``): a reader sees a whole shard or none, a killed job leaves at
most a hidden temporary file (ignored), and no job ever rewrites another's rows. No file locks are used, so
many nodes may write into one folder on a network filesystem at once.

Layout, for a table at ``results/efficiency.csv``::

    results/rows/efficiency/<time>-<random>.jsonl   one shard per job (the source of truth)
    results/efficiency.csv                          derived from every shard (rewritten atomically)

Values keep their JSON types (numbers stay numbers however often a row is read back).
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# The benchmark contract's columns first, then provenance; other keys follow in order of appearance.
COLUMNS = [
    "model", "component", "edit", "variant", "macs", "latency_ms", "latency_ms_min", "latency_ms_max",
    "peak_mem_mb", "cache_mb", "edited_fraction", "active_fraction", "threads", "device", "dtype", "weights",
    "backend", "block_grid", "settings", "settings_key", "command", "machine", "cpu_features", "load_1m", "torch",
    "code_version", "timestamp",
]  # fmt: skip


class ResultsError(RuntimeError):
    """A results folder or shard that cannot be read or written (names the path)."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows, where directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 1) == 0:  # numpy / torch scalars
        return _jsonable(v.item())
    return v


class ResultsStore:
    """The shards of one results table and the CSV derived from them (``csv_path``: e.g. results/efficiency.csv)."""

    def __init__(self, csv_path: str | os.PathLike[str], columns: Sequence[str] = COLUMNS):
        self.csv = Path(csv_path)
        self.shards = self.csv.parent / "rows" / self.csv.stem
        self.columns = list(columns)

    # -- writing -----------------------------------------------------------------------------------------
    def write(self, rows: Iterable[Mapping[str, Any]]) -> Path | None:
        """Store ``rows`` as one new shard (atomically); returns its path (None for no rows)."""
        rows = [{k: _jsonable(v) for k, v in r.items()} for r in rows]
        if not rows:
            return None
        try:
            self.shards.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ResultsError(f"cannot create the results folder {self.shards}: {e.strerror or e}") from e
        sec, ns = divmod(time.time_ns(), 10**9)  # microseconds: shards of one process sort in write order
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.localtime(sec))}.{ns // 1000:06d}-{uuid.uuid4().hex[:12]}.jsonl"
        final, tmp = self.shards / name, self.shards / f".{name}.tmp"
        text = "".join(json.dumps({"row_id": uuid.uuid4().hex, **r}, default=str) + "\n" for r in rows)
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise ResultsError(f"cannot write results to {self.shards}: {e.strerror or e}") from e
        _fsync_dir(self.shards)
        return final

    # -- reading -----------------------------------------------------------------------------------------
    def shard_paths(self) -> list[Path]:
        if not self.shards.is_dir():
            return []
        return sorted(p for p in self.shards.glob("*.jsonl") if not p.name.startswith("."))

    def rows(self) -> list[dict[str, Any]]:
        """Every stored row, oldest shard first (a row stored twice, e.g. by a compaction, appears once)."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for path in self.shard_paths():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as e:
                raise ResultsError(f"cannot read results shard {path}: {e.strerror or e}") from e
            for i, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ResultsError(
                        f"results shard {path} line {i} is not valid JSON ({e.msg}); shards are written atomically, "
                        "so the file was changed by hand or damaged: fix or remove that line"
                    ) from None
                rid = row.get("row_id")
                if rid is not None and rid in seen:
                    continue
                seen.add(rid)
                out.append(row)
        return out

    def frame(self, select: Callable[[dict[str, Any]], bool] | None = None):
        """The rows (those ``select`` keeps) as a pandas DataFrame, columns in contract order."""
        import pandas as pd

        rows = [r for r in self.rows() if select is None or select(r)]
        cols = [c for c in self.columns if any(c in r for r in rows)]
        cols += [k for r in rows for k in r if k not in cols and k != "row_id"]
        cols = list(dict.fromkeys(cols))
        return pd.DataFrame.from_records(rows, columns=cols)

    def measured(self, settings_key: str, code_version: str, machine: str) -> list[dict[str, Any]]:
        """Rows with these settings, code version and machine (what a resumed run reuses)."""
        return [
            r
            for r in self.rows()
            if r.get("settings_key") == settings_key
            and r.get("code_version") == code_version
            and r.get("machine") == machine
        ]

    # -- the derived CSV ----------------------------------------------------------------------------------
    def export_csv(self, select: Callable[[dict[str, Any]], bool] | None = None) -> Path:
        """(Re)write the CSV from every shard (the rows ``select`` keeps): to a temporary file, then renamed over
        the old one."""
        df = self.frame(select)
        self.csv.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.csv.with_name(f".{self.csv.name}.{os.getpid()}-{uuid.uuid4().hex[:6]}.tmp")
        try:
            df.to_csv(tmp, index=False)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.csv)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise ResultsError(f"cannot write {self.csv}: {e.strerror or e}") from e
        return self.csv


def import_csv(csv_path: str | os.PathLike[str], store: ResultsStore) -> Path | None:
    """Store the rows of a CSV written by an older version as one shard, with numbers parsed back into numbers."""
    import csv

    text_fields = {"settings_key", "code_version", "component", "edit", "model", "command", "settings", "timestamp"}

    def value(key: str, s: str) -> Any:
        if s == "":
            return None
        if key in text_fields:  # fields that merely look numeric stay text (hashes, "1.0" components)
            return s
        for cast in (int, float):
            try:
                return cast(s)
            except ValueError:
                pass
        return {"True": True, "False": False}.get(s, s)

    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = [{k: value(k, v) for k, v in r.items() if k is not None} for r in csv.DictReader(f)]
    return store.write(rows)
