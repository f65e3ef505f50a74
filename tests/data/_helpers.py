"""Small helpers shared by the data-layer tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write_manifest(folder: Path, name: str, items: list[dict], **top: object) -> Path:
    """Write ``folder/name.yaml`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **top, "items": items}, sort_keys=False))
    return path
