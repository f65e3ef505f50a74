"""One-shot GPU check of the CUDA kernels: build them for this machine's torch, then run the
CUDA-vs-reference tests (engine/tests/test_cuda_backend.py) with skips turned into failures.

    python engine/tools/gpu_check.py LOG_DIR        (or: make gpu-check LOG=LOG_DIR)

Uses the interpreter that runs it (its torch, its CUDA toolkit); needs setuptools, pytest and
hypothesis there. Writes LOG_DIR/{environment.txt, build.log, pytest.log, junit.xml, summary.txt}
and exits non-zero when the GPU, the toolkit, the build or any test fails. About 3-5 minutes on
one GPU (the build is most of it).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1]
TESTS = ENGINE / "tests" / "test_cuda_backend.py"


def _run(cmd: list[str], log: Path, env: dict[str, str], cwd: Path, timeout: float) -> int:
    """Run ``cmd`` with stdout+stderr teed into ``log``; returns the exit code (124 on timeout)."""
    with open(log, "w") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd, text=True)
        start = time.monotonic()
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            sys.stdout.write(line)
            if time.monotonic() - start > timeout:
                proc.kill()
                fh.write(f"\n[gpu-check] killed after {timeout:.0f} s\n")
                return 124
        return proc.wait()


def _environment() -> tuple[list[str], str | None]:
    """Lines describing torch, the GPU and the toolkit, and the reason the check cannot run (or None)."""
    lines = [f"python {sys.version.split()[0]} ({sys.executable})", f"platform {platform.platform()}"]
    try:
        import torch
    except ImportError as exc:
        return lines, f"torch is not importable from {sys.executable}: {exc}"
    lines.append(f"torch {torch.__version__} (CUDA build: {torch.version.cuda})")
    for mod in ("pytest", "hypothesis", "setuptools"):
        try:
            __import__(mod)
        except ImportError:
            return lines, f"{mod} is missing from {sys.executable}: pip install {mod}"
    if torch.version.cuda is None:
        return lines, "this torch is a CPU-only build; the CUDA kernels need a CUDA build of torch"
    if not torch.cuda.is_available():
        return lines, "torch sees no GPU (torch.cuda.is_available() is False)"
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        lines.append(f"gpu {i}: {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB")
    nvcc = shutil.which("nvcc") or (
        os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc") if "CUDA_HOME" in os.environ else None
    )
    if nvcc is None or not os.path.exists(nvcc):
        return lines, "no CUDA toolkit: nvcc is neither on PATH nor under CUDA_HOME"
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    lines.append(f"nvcc {nvcc}: {out[-1] if out else '?'}")
    return lines, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log_dir", type=Path, help="folder for the logs (created)")
    parser.add_argument("--examples", type=int, default=200, help="hypothesis examples per property test")
    parser.add_argument("--skip-build", action="store_true", help="test the kernels already built in engine/sige")
    args = parser.parse_args(argv)
    log_dir: Path = args.log_dir.resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    summary: list[str] = []

    def finish(ok: bool, why: str) -> int:
        summary.append(f"RESULT: {'PASS' if ok else 'FAIL'} - {why}")
        (log_dir / "summary.txt").write_text("\n".join(summary) + "\n")
        print("\n".join(summary[-1:]), file=sys.stderr if not ok else sys.stdout)
        return 0 if ok else 1

    env_lines, problem = _environment()
    (log_dir / "environment.txt").write_text("\n".join(env_lines) + "\n")
    summary += env_lines
    if problem:
        return finish(False, problem)

    import torch

    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ENGINE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    )
    if not args.skip_build:
        for stale in (ENGINE / "sige").glob("_C_cuda*"):  # a kernel built elsewhere must not pass for this one
            stale.unlink()
        major, minor = torch.cuda.get_device_capability(0)
        build_env = dict(env, SIGE_BUILD_CUDA="1", TORCH_CUDA_ARCH_LIST=f"{major}.{minor}",
                         MAX_JOBS=str(max(1, os.cpu_count() or 1)))  # fmt: skip
        start = time.monotonic()
        rc = _run(
            [sys.executable, "setup.py", "build_ext", "--inplace"], log_dir / "build.log", build_env, ENGINE, 1200
        )
        summary.append(f"build: exit {rc} in {time.monotonic() - start:.0f} s (sm_{major}{minor}; log build.log)")
        if rc != 0:
            return finish(False, f"building the extension failed (exit {rc}); see {log_dir / 'build.log'}")
    probe = "from sige.backends import native; import sys; sys.exit(0 if native._C_cuda else native.CUDA_IMPORT_ERROR)"
    imported = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    if imported.returncode != 0:
        why = (imported.stderr.strip().splitlines() or ["?"])[-1]
        return finish(False, f"sige._C_cuda did not build or does not import ({why}); see {log_dir / 'build.log'}")

    test_env = dict(env, SIGE_REQUIRE_CUDA="1", SIGE_HYPOTHESIS_EXAMPLES=str(args.examples))
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-o", "addopts=", str(TESTS),
           f"--junitxml={log_dir / 'junit.xml'}", "--rootdir", str(ENGINE)]  # fmt: skip
    start = time.monotonic()
    rc = _run(cmd, log_dir / "pytest.log", test_env, ENGINE, 600)
    summary.append(f"tests: exit {rc} in {time.monotonic() - start:.0f} s (log pytest.log, junit.xml)")
    if rc != 0:
        return finish(False, f"CUDA tests failed (exit {rc}); see {log_dir / 'pytest.log'}")
    return finish(True, "the CUDA kernels build and match the reference backend on this GPU")


if __name__ == "__main__":
    sys.exit(main())
