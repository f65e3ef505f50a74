#!/usr/bin/env python
"""`make reproduce-quality`: the quality tables (FID, PSNR, LPIPS, mIoU) of every model.

Runs every `task=quality` job of configs/quality/*.yaml. Jobs whose weights or datasets are absent are
collected, and ONE message at the end lists exactly what to download and where; the other jobs run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir

from sige.data import DataError
from sige.metrics import MissingWeightsError
from sige.tasks import model_task

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default_jobs = sorted(str(p) for p in (ROOT / "configs" / "quality").glob("*.yaml"))
    parser.add_argument("--jobs", nargs="*", default=default_jobs)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    args = parser.parse_args(argv)
    jobs = [job for path in args.jobs for job in (yaml.safe_load(Path(path).read_text()) or {}).get("jobs", [])]
    if not jobs:
        print("no quality jobs are configured (configs/quality/*.yaml)", file=sys.stderr)
        return 1
    missing: dict[str, list[str]] = {}  # what to download and where (one message) -> the jobs that need it
    done = failed = 0
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for job in jobs:
            name = " ".join(job["overrides"])
            cfg = compose("config", overrides=["task=quality", *job["overrides"], *args.overrides])
            try:
                model_task(cfg)
                done += 1
            except (MissingWeightsError, DataError, FileNotFoundError) as e:  # weights or data not there yet
                missing.setdefault(str(e).strip(), []).append(name)
            except Exception as e:  # report and go on with the other models
                failed += 1
                print(f"FAILED {name}: {type(e).__name__}: {e}", file=sys.stderr)
    if missing:
        print("\nThese files are needed before the remaining quality jobs can run:", file=sys.stderr)
        for message, needed_by in missing.items():
            print(f"\n[for: {'; '.join(needed_by)}]\n{message}", file=sys.stderr)
    print(f"quality jobs: {done} ran, {len(jobs) - done - failed} waiting for files, {failed} failed", file=sys.stderr)
    return 0 if done == len(jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
