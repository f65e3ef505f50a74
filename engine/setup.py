"""Build of the optional native kernels; all package metadata lives in pyproject.toml.

Extensions (sources in csrc/ beside this file):

* ``sige._C`` (CPU, C++ with OpenMP) is always attempted.
* ``sige._C_cuda`` is attempted when a CUDA toolkit (nvcc under CUDA_HOME) is found and torch is a
  CUDA build, or when ``SIGE_BUILD_CUDA=1``; ``SIGE_BUILD_CUDA=0`` disables it.

A failed compile never fails the installation: the extension is skipped with a warning and the
package runs on the pure-PyTorch reference backend. Install with
``pip install --no-build-isolation -e engine`` from the repository root (torch must already be installed). Knobs:
``SIGE_BUILD_CUDA`` (0/1), ``MAX_JOBS`` (parallel compile jobs), ``TORCH_CUDA_ARCH_LIST``
(default ``8.0;9.0+PTX``), ``SIGE_NATIVE_ARCH=1`` (``-march=native``: faster, not portable).
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import time

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "csrc")
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"


def _say(msg: str) -> None:
    print(f"[sige setup] {msg}", file=sys.stderr, flush=True)


def _flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def _sources(sub: str, *exts: str) -> list[str]:
    folder = os.path.join(CSRC, sub)
    # setuptools wants source paths relative to setup.py
    return sorted(os.path.relpath(os.path.join(folder, f), HERE) for f in os.listdir(folder) if f.endswith(exts))


def _locate_cuda_home() -> None:
    """Set CUDA_HOME when it is unset and torch's guess (the folder above ``which nvcc``) is not a
    toolkit, e.g. /usr/local/bin/nvcc as a wrapper script for /usr/local/cuda-13.0/bin/nvcc. Must
    run before torch.utils.cpp_extension is imported (it reads CUDA_HOME once)."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return

    def is_toolkit(home: str) -> bool:
        return os.path.isfile(os.path.join(home, "bin", "nvcc")) and os.path.isfile(
            os.path.join(home, "include", "cuda_runtime.h")
        )

    nvcc = shutil.which("nvcc")
    candidates = []
    if nvcc:
        candidates += [os.path.dirname(os.path.dirname(p)) for p in (nvcc, os.path.realpath(nvcc))]
    candidates += ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    if candidates and is_toolkit(candidates[0]):
        return  # torch's own guess works
    for home in candidates:
        if is_toolkit(home):
            os.environ["CUDA_HOME"] = home
            return


def _native_build():
    """(ext_modules, cmdclass) for the kernels, or empty ones when torch is unavailable."""
    _locate_cuda_home()
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except Exception as exc:  # any import problem means "no native build"
        _say(f"WARNING: torch is not importable ({exc}); skipping the native kernels (reference backend only).")
        return [], {}

    linux, windows = sys.platform.startswith("linux"), sys.platform == "win32"
    if windows:
        cxx, link = ["/O2", "/openmp", "/fp:precise"], []
    else:
        cxx, link = ["-O3", "-g0", "-ffp-contract=off", "-fno-trapping-math"], []
        if linux:  # OpenMP through at::parallel_for (torch's libgomp); elsewhere the loops run serially
            cxx.append("-fopenmp")
            link.append("-fopenmp")
        if _flag("SIGE_NATIVE_ARCH"):
            cxx.append("-march=native")
    include = [os.path.abspath(CSRC)]
    exts = [
        CppExtension(
            "sige._C",
            _sources("cpu", ".cpp"),
            include_dirs=include,
            extra_compile_args={"cxx": cxx},
            extra_link_args=link,
            optional=True,
        )
    ]

    want_cuda = _flag("SIGE_BUILD_CUDA")
    if want_cuda is None:
        want_cuda = torch.version.cuda is not None and _cuda_toolkit() is not None
    if want_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)
        _say(f"building the CUDA kernels for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}")
        try:
            exts.append(
                CUDAExtension(
                    "sige._C_cuda",
                    _sources("cuda", ".cu", ".cpp"),
                    include_dirs=include,
                    extra_compile_args={"cxx": [f for f in cxx if f != "-fopenmp"], "nvcc": ["-O3"]},
                    optional=True,
                )
            )
        except Exception as exc:  # e.g. SIGE_BUILD_CUDA=1 without a toolkit (CUDA_HOME unknown)
            _say(f"WARNING: cannot set up the CUDA kernels ({exc}); CUDA tensors will use the reference backend.")
    elif _flag("SIGE_BUILD_CUDA") is False:
        _say("not building the CUDA kernels (SIGE_BUILD_CUDA=0)")
    else:
        _say("not building the CUDA kernels (no CUDA toolkit or CPU-only torch; SIGE_BUILD_CUDA=1 forces it)")

    class SafeBuildExt(BuildExtension):
        """Build each extension on its own; a failure is reported and skipped, never fatal."""

        def initialize_options(self):
            super().initialize_options()
            self._sige_failed: list[str] = []

        def build_extensions(self):
            try:
                super().build_extensions()
            except Exception as exc:  # checks before compiling (compiler, CUDA version)
                cuda = [e for e in self.extensions if e.name.endswith("_cuda")]
                _say(f"WARNING: native build setup failed ({exc}).")
                if cuda and len(cuda) < len(self.extensions):
                    _say("WARNING: retrying without the CUDA kernels.")
                    self._sige_failed += [e.name for e in cuda]
                    self.extensions = [e for e in self.extensions if e not in cuda]
                    try:
                        super().build_extensions()
                    except Exception as exc2:
                        _say(f"WARNING: native build setup failed again ({exc2}).")
                        self._sige_failed += [e.name for e in self.extensions]
                else:
                    self._sige_failed += [e.name for e in self.extensions]
            failed = set(self._sige_failed)
            self.extensions = [e for e in self.extensions if e.name not in failed]
            if failed:
                where = "CUDA tensors use" if failed == {"sige._C_cuda"} else "sige runs on"
                _say(
                    f"WARNING: not built: {', '.join(sorted(failed))}; {where} the (slower) reference backend. "
                    "Fix the compiler/toolkit and rerun `pip install --no-build-isolation -e engine` "
                    "(see README, 'Native kernels')."
                )

        def build_extension(self, ext):
            start = time.perf_counter()
            try:
                super().build_extension(ext)
            except Exception as exc:  # compile/link errors of any kind
                self._sige_failed.append(ext.name)
                _say(f"WARNING: building {ext.name} failed after {time.perf_counter() - start:.0f} s: {exc}")
                return
            _say(f"built {ext.name} in {time.perf_counter() - start:.1f} s")

    return exts, {"build_ext": SafeBuildExt}


def _cuda_toolkit() -> str | None:
    """Directory of a usable CUDA toolkit (with nvcc), or None."""
    try:
        from torch.utils.cpp_extension import CUDA_HOME
    except Exception:
        return None
    if CUDA_HOME and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc.exe" if os.name == "nt" else "nvcc")):
        return CUDA_HOME
    return None


ext_modules, cmdclass = _native_build()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
