"""How a row was produced: settings hash, command, machine (CPU model, features, load), torch and code version."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
# What counts as "the code" of a measurement (a change anywhere here is a new code version).
CODE_PATHS = ("engine", "sigebench", "diffusion", "gaugan", "sdxl", "configs", "scripts")
# CPU features that decide which kernels run fast (recorded with every row, see `cpu_features`).
_FEATURES = (
    "avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16", "amx_tile", "fma", "neon", "asimd",
)  # fmt: skip


def _cpuinfo() -> dict[str, str]:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "flags", "Features") and key not in info:
            info[key] = value.strip()
    return info


@functools.lru_cache(maxsize=1)
def machine_id() -> str:
    """A short description of this machine: CPU model and core count."""
    cpu = _cpuinfo().get("model name") or platform.processor() or platform.machine()
    return f"{cpu} x{os.cpu_count()}"


@functools.lru_cache(maxsize=1)
def cpu_features() -> str:
    """The CPU features among avx2, avx512f, avx512_bf16, amx_bf16, ... that this CPU has (space-separated)."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return " ".join(f for f in _FEATURES if f in flags)


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): a busy machine distorts timings."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Git commit of the checkout; with uncommitted changes to the code, ``+dirty-<hash of the changes>``
    (so rows measured on the same uncommitted code still count as the same version)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout

    try:
        head = git("rev-parse", "--short=12", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    if not status.strip():
        return head
    digest = hashlib.sha1(git("diff", "HEAD", "--", *CODE_PATHS).encode())
    for line in sorted(status.splitlines()):
        if line.startswith("??"):
            f = ROOT / line[3:]
            digest.update(line.encode() + (f.read_bytes() if f.is_file() else b""))
    return f"{head}+dirty-{digest.hexdigest()[:8]}"


def settings_key(settings: Mapping[str, Any]) -> str:
    """Stable hash of the settings that determine a row (for resuming sweeps)."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def provenance(settings: Mapping[str, Any], command: str | None = None) -> dict[str, Any]:
    """Columns that say how a row was produced."""
    return {
        "settings": json.dumps(settings, sort_keys=True, default=str),
        "settings_key": settings_key(settings),
        "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine_id(),
        "cpu_features": cpu_features(),
        "load_1m": load_average(),
        "torch": torch.__version__,
        "code_version": code_version(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
