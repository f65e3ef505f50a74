"""Backend registry: which implementation of the sparse ops runs for a tensor's device.

Backends are modules exposing ``gather``, ``scatter_``, ``copy_tiles_``, ``block_residual_``,
``get_scatter_map`` and ``scatter_gather`` with the reference backend's signatures. The
reference backend (pure PyTorch) serves every device; native backends register themselves for
the device types they support and win over the reference one unless a backend is forced with
:func:`set_backend` or the ``SIGE_BACKEND`` environment variable (``auto`` | ``reference`` |
``native``).
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from types import ModuleType

from sige.backends import reference

_NATIVE: dict[str, ModuleType] = {}  # device type -> native backend module
_forced: str | None = None
_warned_missing = False


def register_native(device_type: str, module: ModuleType) -> None:
    """Register a native backend module for a device type ("cpu", "cuda")."""
    _NATIVE[device_type] = module


def available() -> dict[str, list[str]]:
    """Backend names usable per device type."""
    out: dict[str, list[str]] = {"cpu": ["reference"], "cuda": ["reference"]}
    for dev, mod in _NATIVE.items():
        out.setdefault(dev, ["reference"]).append(getattr(mod, "NAME", "native"))
    return out


def _choice() -> str:
    choice = _forced or os.environ.get("SIGE_BACKEND", "auto")
    if choice not in ("auto", "reference", "native"):
        raise ValueError(f"SIGE_BACKEND must be 'auto', 'reference' or 'native', got {choice!r}")
    return choice


def set_backend(name: str | None) -> None:
    """Force a backend ("reference" or "native") for every device, or None to go back to automatic."""
    global _forced
    if name not in (None, "auto", "reference", "native"):
        raise ValueError(f"backend must be 'auto', 'reference' or 'native', got {name!r}")
    _forced = None if name == "auto" else name


@contextmanager
def use_backend(name: str):
    """Context manager form of :func:`set_backend`."""
    previous = _forced
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def for_device(device_type: str) -> ModuleType:
    """The backend module that serves tensors on ``device_type``."""
    choice = _choice()
    if choice == "reference":
        return reference
    native = _NATIVE.get(device_type)
    if native is None:
        if choice == "native":
            raise RuntimeError(
                f"SIGE_BACKEND=native but no native backend is built for {device_type!r} tensors; "
                "rebuild with `pip install -e .` (see README, 'Native kernels') or use SIGE_BACKEND=auto"
            )
        if device_type == "cpu":
            _warn_missing_native()
        return reference
    return native


def _warn_missing_native() -> None:
    """Say once that the CPU kernels are missing and the slower reference backend runs instead."""
    global _warned_missing
    if _warned_missing:
        return
    _warned_missing = True
    warnings.warn(
        "sige: the native kernels are not built, so the reference backend (pure PyTorch, slower) is used. "
        "Build them with `pip install --no-build-isolation -e .` on a machine with a C++ compiler "
        "(see README, 'Native kernels').",
        RuntimeWarning,
        stacklevel=4,  # the caller of the sige.ops function
    )


def name_for(device_type: str) -> str:
    """Name of the backend that :func:`for_device` picks."""
    return getattr(for_device(device_type), "NAME", "native")


# Register the native kernels when they are built; a missing or broken build never breaks import.
try:
    from sige.backends import native as _native

    _native.load()
except Exception:  # pragma: no cover - defensive: the module itself guards its extension imports
    pass
