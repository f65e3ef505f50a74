#!/usr/bin/env python
"""`make reproduce-table`: run every efficiency job of configs/reproduce/*.yaml, then write results/TABLE.md.

Rows already measured for the same settings, code version and machine are reused (``--force`` re-measures);
``--quick`` runs only the jobs marked quick. Progress and an ETA go to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from table import write_table  # noqa: E402

from sige.tasks import efficiency  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="only the jobs marked quick (a few minutes)")
    parser.add_argument("--force", action="store_true", help="re-measure rows that already exist")
    parser.add_argument(
        "--jobs", nargs="*", default=sorted(str(p) for p in (ROOT / "configs" / "reproduce").glob("*.yaml"))
    )
    parser.add_argument("--output", default=str(ROOT / "results" / "efficiency.csv"))
    parser.add_argument("--table", default=str(ROOT / "results" / "TABLE.md"))
    parser.add_argument("--published", default=str(ROOT / "results" / "published_numbers.csv"))
    parser.add_argument("--table-only", action="store_true", help="only rewrite TABLE.md from the CSV")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job (e.g. threads=2)")
    args = parser.parse_args(argv)

    all_jobs = [job for path in args.jobs for job in yaml.safe_load(Path(path).read_text())["jobs"]]
    jobs = [j for j in all_jobs if j.get("quick")] if args.quick else all_jobs
    if args.table_only:
        write_table(args.output, args.published, args.table, all_jobs)
        return 0
    start = time.time()
    failures = []
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        bar = tqdm(jobs, desc="reproduce-table", unit="job", file=sys.stderr)
        for job in bar:
            overrides = [
                *job["overrides"],
                f"output={args.output}",
                f"force={str(args.force).lower()}",
                *args.overrides,
            ]
            bar.set_postfix_str(" ".join(job["overrides"]))
            cfg = compose("config", overrides=overrides)
            try:
                efficiency(cfg)
            except Exception as e:  # report every failing job, keep measuring the others
                failures.append((job["overrides"], f"{type(e).__name__}: {e}"))
                print(f"FAILED {' '.join(job['overrides'])}: {type(e).__name__}: {e}", file=sys.stderr)
    write_table(args.output, args.published, args.table, all_jobs)  # every job's published link, any row measured
    print(f"wrote {args.output} and {args.table} in {time.time() - start:.0f} s", file=sys.stderr)
    for overrides, err in failures:
        print(f"failed: {' '.join(overrides)}: {err}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
