"""`make reproduce-quality`: the quality tables (FID, PSNR, LPIPS, mIoU) of every model.

Runs every `task=quality` job of the job lists in configs/quality/. Jobs whose weights or datasets are absent are
collected, and ONE message at the end lists exactly what to download and where; the other jobs run.
"""

from __future__ import annotations

import argparse
import sys

from sigebench.data import DataError
from sigebench.jobs import compose_job, job_name, load_jobs
from sigebench.metrics import MissingWeightsError
from sigebench.tasks import quality
from sigebench.weights import MissingCheckpointError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", nargs="*", help="job lists of configs/quality/ (default: all)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    args = parser.parse_args(argv)
    jobs = load_jobs("quality", args.jobs)
    if not jobs:
        print("no quality jobs are configured (configs/quality/*.yaml)", file=sys.stderr)
        return 1
    missing: dict[str, list[str]] = {}  # what to download and where (one message) -> the jobs that need it
    done = failed = 0
    for job in jobs:
        name = job_name(job)
        try:
            quality(compose_job(["task=quality", *job["overrides"], *args.overrides]))
            done += 1
        except (MissingWeightsError, MissingCheckpointError, DataError, FileNotFoundError) as e:  # files not there yet
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
