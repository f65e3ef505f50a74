"""What ``weights=`` means, the same for every model: ``null`` (or ``random``) = random initialisation,
``pretrained`` = the model config's released checkpoint (``checkpoint: {manifest, item}``, fetched through
the data layer or found in ``SIGE_DATA`` / ``SIGE_DATA_MIRROR``), anything else = the path of a checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

RANDOM = (None, "", "random", "null", "none")


class MissingCheckpointError(FileNotFoundError):
    """``weights=pretrained`` (or a path) names a checkpoint that is not available here."""


def resolve_weights(
    weights: str | None, checkpoint: Mapping[str, Any] | None, model: str = "this model"
) -> Path | None:
    """The checkpoint file ``weights`` names (see the module docstring), or None for random weights."""
    if weights in RANDOM or (isinstance(weights, str) and weights.lower() in RANDOM):
        return None
    if weights != "pretrained":
        path = Path(str(weights)).expanduser()
        if not path.is_file():
            what = "a folder, not a file" if path.is_dir() else "no such file"
            raise MissingCheckpointError(
                f"weights={weights!r}: {what}; give a checkpoint file, weights=pretrained or weights=null (random)"
            )
        return path
    if not checkpoint:
        raise MissingCheckpointError(
            f"weights=pretrained: {model} has no released checkpoint; pass weights=PATH or weights=null (random)"
        )
    from sigebench.data import DataError, data_path, load_manifest

    manifest, item = checkpoint["manifest"], checkpoint["item"]
    try:
        return data_path(manifest, item)
    except DataError as e:
        it = load_manifest(manifest).item(item)
        sums = ", ".join(f"{a} {h}" for a, h in it.checksums.items()) or "no checksum"
        raise MissingCheckpointError(
            f"weights=pretrained needs {item} (datasets/{manifest}.yaml: {', '.join(it.urls)}; {sums}) and it is "
            f"not available here: {e} "
            f"Fetch it with `python -m sigebench.data fetch {manifest} {item}` where the internet is reachable, "
            "set SIGE_DATA_MIRROR to a folder holding it, or pass weights=PATH"
        ) from e


def weights_label(path: Path | None) -> str:
    """The ``weights`` column of a row: ``random`` or the checkpoint path."""
    return "random" if path is None else str(path)
