"""`make reproduce-table`: run every efficiency job of the job lists in configs/reproduce/, then write results/TABLE.md.

Rows already measured for the same settings, code version and machine are reused (``--force`` re-measures);
``--quick`` runs only the jobs marked quick. Every job stores its rows as one shard the moment it finishes, so
an interrupted run loses nothing that was finished: run the same command again to resume. Progress and an ETA
go to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from sigebench.config import plain
from sigebench.family import load_family
from sigebench.jobs import compose_job, job_name, load_jobs
from sigebench.provenance import ROOT
from sigebench.results import ResultsStore
from sigebench.table import write_table
from sigebench.tasks import edit_label, efficiency


def job_key(cfg: Any) -> tuple[str, str, str]:
    """(model name, component, edit label) of the rows a composed job config writes."""
    c = plain(cfg)
    component = c.get("component") or load_family(c["model"]["family"], c["families"]).COMPONENTS[0]
    return c["model"]["name"], component, edit_label(c["edit"])


def published_links(jobs: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], dict]:
    """``(model, component, edit) -> published spec`` of every job that links to published figures."""
    return {job_key(compose_job(j["overrides"])): j["published"] for j in jobs if j.get("published")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="only the jobs marked quick (a few minutes)")
    parser.add_argument("--force", action="store_true", help="re-measure rows that already exist")
    parser.add_argument("--jobs", nargs="*", help="job lists of configs/reproduce/ (default: all)")
    parser.add_argument("--output", default=str(ROOT / "results" / "efficiency.csv"))
    parser.add_argument("--table", default=str(ROOT / "results" / "TABLE.md"))
    parser.add_argument("--published", default=str(ROOT / "results" / "published_numbers.csv"))
    parser.add_argument("--table-only", action="store_true", help="only rewrite TABLE.md (and the CSV) from the rows")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job (e.g. threads=2)")
    args = parser.parse_args(argv)

    all_jobs = load_jobs("reproduce", args.jobs)
    jobs = [j for j in all_jobs if j.get("quick")] if args.quick else all_jobs
    store = ResultsStore(args.output)
    start = time.time()
    failures: list[tuple[str, str]] = []
    finished = 0
    if not args.table_only:
        bar = tqdm(jobs, desc="reproduce-table", unit="job", file=sys.stderr)
        try:
            for job in bar:
                bar.set_postfix_str(job_name(job))
                overrides = [*job["overrides"], f"output={args.output}", f"force={str(args.force).lower()}",
                             *args.overrides]  # fmt: skip
                try:
                    efficiency(compose_job(overrides))
                    finished += 1
                except Exception as e:  # report every failing job, keep measuring the others
                    failures.append((job_name(job), f"{type(e).__name__}: {e}"))
                    print(f"FAILED {job_name(job)}: {type(e).__name__}: {e}", file=sys.stderr)
        except KeyboardInterrupt:
            bar.close()
            print(
                f"\ninterrupted: {finished} of {len(jobs)} jobs finished and stored under {store.shards}; run the same "
                "command again to resume (finished jobs are reused)",
                file=sys.stderr,
            )
            store.export_csv()
            return 130
    store.export_csv()
    write_table(store.frame(), args.published, args.table, published_links(all_jobs).items())
    print(f"wrote {args.output} and {args.table} in {time.time() - start:.0f} s", file=sys.stderr)
    for name, err in failures:
        print(f"failed: {name}: {err}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
