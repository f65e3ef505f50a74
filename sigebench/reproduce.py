"""`make reproduce-table`: run every efficiency job of the job lists in configs/reproduce/, then write results/TABLE.md.

Rows already measured for the same settings, code version and machine are reused (``--force`` re-measures);
``--quick`` runs only the jobs marked quick. Every job stores its rows as one shard the moment it finishes, so
an interrupted run loses nothing that was finished: run the same command again to resume. Progress and an ETA
go to stderr.

``--launcher local`` (the default) runs the jobs one after another in this process. ``--launcher NAME`` fans them
out through a Hydra launcher config of ``configs/hydra/launcher/`` (``joblib``, ``ray``, ``ray_cluster``, ``slurm``,
``submitit_local``; :mod:`sigebench.launch_jobs`), configured by the ``hydra.*`` overrides; each job resumes by
settings, code version and the machine it runs on, and returns its rows (stored here too when the job's node does
not share this results folder). A job that failed or died is reported by name, the others are kept, the exit status
is 1, and the next call runs it again.

TABLE.md holds the rows of one machine (the ``machine`` column: CPU model and core count): the one that measured
this call's jobs (the newest rows' with ``--table-only``). The rows of every other machine go to
``TABLE.<machine>.md`` beside it, so latencies and speedups never mix machines.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sigebench.config import plain
from sigebench.family import load_family
from sigebench.jobs import compose_job, job_name, load_jobs
from sigebench.launch_jobs import launch
from sigebench.provenance import ROOT
from sigebench.results import ResultsStore
from sigebench.table import read_published, render_table, write_table
from sigebench.tasks import absolute_output, edit_label, efficiency


def job_key(cfg: Any) -> tuple[str, str, str]:
    """(model name, component, edit label) of the rows a composed job config writes."""
    c = plain(cfg)
    component = c.get("component") or load_family(c["model"]["family"], c["families"]).COMPONENTS[0]
    return c["model"]["name"], component, edit_label(c["edit"])


def published_links(jobs: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], dict]:
    """``(model, component, edit) -> published spec`` of every job that links to published figures."""
    return {job_key(compose_job(j["overrides"])): j["published"] for j in jobs if j.get("published")}


def _cpu_dtype(dtype: str) -> str | None:
    from sigebench.config import ConfigError, check_cpu_dtype

    try:
        check_cpu_dtype(dtype)
    except ConfigError as e:
        return str(e).split(";")[0]
    return None


# A job's `needs:` -> a check of this machine (None: met; else why not). Judged where the driver runs.
NEEDS = {"cpu_bfloat16": lambda: _cpu_dtype("bfloat16"), "cpu_float16": lambda: _cpu_dtype("float16")}


def runnable(jobs: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """(the jobs whose ``needs:`` this machine meets, [(job, why not)] of the others)."""
    keep, unmet = [], []
    for job in jobs:
        need = job.get("needs")
        if need is not None and need not in NEEDS:
            raise ValueError(
                f"job {job_name(job)} of {job.get('list')}: unknown needs: {need!r} (known: {sorted(NEEDS)})"
            )
        why = NEEDS[need]() if need else None
        (unmet.append((job, why)) if why else keep.append(job))
    return keep, unmet


def is_hydra_override(override: str) -> bool:
    """``hydra.launcher.partition=...``, ``hydra/launcher=...``: settings of the launch, not of a job."""
    return override.lstrip("+~").startswith(("hydra.", "hydra/"))


def _measurement(row: dict) -> tuple:
    return row.get("settings_key"), row.get("machine"), row.get("timestamp"), row.get("variant")


def measure(cfg: Any) -> list[dict[str, Any]]:
    """The task of a launched job: :func:`~sigebench.tasks.efficiency`, returning its rows as stored (with their row
    ids, so that the driver recognises them in its own results folder)."""
    rows = efficiency(cfg)
    if all("row_id" in r for r in rows):  # reused rows come from the store
        return rows
    keys = {_measurement(r) for r in rows}
    stored = [r for r in ResultsStore(absolute_output(cfg.output)).rows() if _measurement(r) in keys]
    return stored if len(stored) == len(rows) else rows


def run_here(
    jobs: Sequence[dict[str, Any]], common: list[str], rows: list[dict], failures: list[tuple[str, str]]
) -> None:
    """Every job in this process, one after another, with a progress bar; appends to ``rows`` (those returned) and
    ``failures`` as the jobs finish."""
    bar = tqdm(jobs, desc="reproduce-table", unit="job", file=sys.stderr)
    try:
        for job in bar:
            bar.set_postfix_str(job_name(job))
            try:
                rows += efficiency(compose_job([*job["overrides"], *common]))
            except Exception as e:  # report every failing job, keep measuring the others
                failures.append((job_name(job), f"{type(e).__name__}: {e}"))
                print(f"FAILED {job_name(job)}: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        bar.close()


def run_launched(
    launcher: str, jobs: Sequence[dict[str, Any]], common: list[str], hydra_overrides: list[str],
    rows: list[dict], failures: list[tuple[str, str]],
) -> None:  # fmt: skip
    """Every job through the launcher config ``launcher``; appends to ``rows`` (those returned) and ``failures``."""
    if not any(o.lstrip("+~").startswith("hydra.sweep.dir=") for o in hydra_overrides):
        sweep = ROOT / "multirun" / "reproduce-table" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}-{os.getpid()}"
        hydra_overrides = [*hydra_overrides, f"hydra.sweep.dir={sweep}"]  # job logs; shared with the nodes
    print(f"reproduce-table: {len(jobs)} jobs through launcher {launcher}", file=sys.stderr)
    outcomes = launch(launcher, [[*job["overrides"], *common] for job in jobs], measure, hydra_overrides)
    for job, outcome in zip(jobs, outcomes):
        if outcome.error is None:
            rows += outcome.value or []
        else:
            failures.append((job_name(job), outcome.error))
            print(f"FAILED {job_name(job)}: {outcome.error}", file=sys.stderr)


def store_returned(store: ResultsStore, rows: Sequence[dict]) -> int:
    """Store the rows launched jobs returned that this results folder lacks (jobs on nodes that do not share it),
    recognised by row id (or by settings, machine, time and variant); returns how many were stored."""
    stored = store.rows()
    ids, measurements = {r.get("row_id") for r in stored}, {_measurement(r) for r in stored}
    missing = [r for r in rows if r.get("row_id") not in ids and _measurement(r) not in measurements]
    store.write(missing)
    return len(missing)


def machine_slug(machine: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", machine.lower()).strip("-")[:60] or "unknown"


def write_tables(
    store: ResultsStore, table: str, published: str, links: dict, returned: Sequence[dict]
) -> list[tuple[str, Path]]:
    """TABLE.md for the machine that measured ``returned`` (or the newest rows), TABLE.<machine>.md for each other
    machine; returns [(machine, path)], TABLE.md first."""
    frame = store.frame()
    machines = frame["machine"].fillna("unknown").astype(str) if "machine" in frame else None
    if machines is None or frame.empty:
        write_table(frame, published, table, links.items())
        return [("", Path(table))]
    stamps = frame["timestamp"].fillna("").astype(str) if "timestamp" in frame else ""
    newest = frame.assign(machine=machines, stamp=stamps).groupby("machine")["stamp"].max().sort_values(ascending=False)
    counts = Counter(str(r.get("machine") or "unknown") for r in returned)
    primary = counts.most_common(1)[0][0] if counts else str(newest.index[0])
    order = [primary, *(m for m in newest.index if m != primary)]
    out = Path(table)
    paths = [(m, out if m == primary else out.with_name(f"{out.stem}.{machine_slug(m)}{out.suffix}")) for m in order]
    others = ", ".join(p.name for _, p in paths[1:])
    for m, path in paths:
        rows = frame[machines == m]
        if path == out:
            text = write_table(rows, published, path, links.items())
        else:  # the table alone (the throughput section belongs to TABLE.md)
            text = render_table(rows, read_published(published) if Path(published).exists() else no_published(), links)
        note = f"Machine: {m} (CPU model and cores of every row below)."
        if others:
            note += f" Rows of other machines: {others}." if path == out else f" Other machines: {out.name}."
        title, _, rest = text.partition("\n")
        write_text(path, f"{title}\n\n{note}\n{rest}")
    return paths


def no_published() -> Any:
    import pandas as pd

    return pd.DataFrame(columns=["model", "setting", "edit", "case", "variant", "macs_g", "device", "latency"])


def write_text(path: Path, text: str) -> None:
    """Write a derived file atomically (aside, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the jobs marked quick (a few minutes)")
    parser.add_argument("--force", action="store_true", help="re-measure rows that already exist")
    parser.add_argument("--jobs", nargs="*", help="job lists of configs/reproduce/ (default: all)")
    parser.add_argument("--output", default=str(ROOT / "results" / "efficiency.csv"))
    parser.add_argument("--table", default=str(ROOT / "results" / "TABLE.md"))
    parser.add_argument("--published", default=str(ROOT / "results" / "published_numbers.csv"))
    parser.add_argument("--table-only", action="store_true", help="only rewrite TABLE.md (and the CSV) from the rows")
    parser.add_argument(
        "--launcher", default="local",
        help="local (one job after another in this process; default) or a config of configs/hydra/launcher/: "
        "joblib, ray, ray_cluster, slurm, submitit_local (configured by hydra.launcher.* overrides)",
    )  # fmt: skip
    parser.add_argument(
        "overrides", nargs="*",
        help="extra Hydra overrides for every job (e.g. threads=2), or of the launcher (hydra.launcher.num_cpus=...)",
    )  # fmt: skip
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after the options

    hydra_overrides = [o for o in args.overrides if is_hydra_override(o)]
    if hydra_overrides and args.launcher == "local":
        print(f"error: {' '.join(hydra_overrides)} configure a launcher; add --launcher NAME", file=sys.stderr)
        return 2
    common = [f"output={args.output}", f"force={str(args.force).lower()}",
              *(o for o in args.overrides if not is_hydra_override(o))]  # fmt: skip
    all_jobs = load_jobs("reproduce", args.jobs)
    jobs = [j for j in all_jobs if j.get("quick")] if args.quick else all_jobs
    jobs, unmet = runnable(jobs)
    for job, why in unmet:
        print(f"skipped {job_name(job)}: {why}", file=sys.stderr)
    store = ResultsStore(args.output)
    start = time.time()
    returned: list[dict] = []
    failures: list[tuple[str, str]] = []
    if not args.table_only:
        from sigebench.errors import USER_ERRORS

        try:
            if args.launcher == "local":
                run_here(jobs, common, returned, failures)
            else:
                run_launched(args.launcher, jobs, common, hydra_overrides, returned, failures)
        except KeyboardInterrupt:  # a launcher cancels the jobs still queued or running
            done = (
                f"{len({r.get('settings_key') for r in returned})} of {len(jobs)} jobs finished"
                if args.launcher == "local"
                else "the jobs that finished are"
            )
            print(
                f"\ninterrupted: {done} stored under {store.shards}; run the same command again to resume (finished "
                "jobs are reused)",
                file=sys.stderr,
            )
            store.export_csv()
            return 130
        except USER_ERRORS as e:  # the launch itself cannot work (launcher name, its settings, the cluster)
            print(f"error: {e}", file=sys.stderr)
            return 2
        added = store_returned(store, returned) if args.launcher != "local" else 0
        if added:
            print(f"stored {added} rows returned by jobs whose nodes do not share {store.shards}", file=sys.stderr)
    store.export_csv()
    tables = write_tables(store, args.table, args.published, published_links(all_jobs), returned)
    print(f"wrote {args.output} and {', '.join(str(p) for _, p in tables)} in {time.time() - start:.0f} s",
          file=sys.stderr)  # fmt: skip
    for name, err in failures:
        print(f"failed: {name}: {err}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {len(jobs)} jobs failed; run the same command again to re-run them", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
