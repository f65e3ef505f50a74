"""Declared, verified data for the SIGE reproduction.

Every downloadable file is named in a YAML manifest under ``datasets/`` (URL, checksum, size, archive
layout); pooch, with a resuming downloader, fetches them into the data root (``$SIGE_DATA``, default ``./data``),
or copies them from a mirror (``$SIGE_DATA_MIRROR``). Benchmarks ask for files by name::

    from sigebench.data import data_path
    mask = np.load(data_path("example_edits", "engine/mask.npy"))

Command line: ``python -m sigebench.data list | fetch NAME | verify NAME | path NAME ITEM``.
"""

from __future__ import annotations

from .download import data_path, data_root, fetch, fetch_item, item_status, local_path, mirror_setting, verify
from .errors import ChecksumError, DataError, DownloadError, ManifestError
from .manifest import Item, Manifest, list_manifests, load_manifest, manifest_dir

__all__ = [
    "ChecksumError",
    "DataError",
    "DownloadError",
    "Item",
    "Manifest",
    "ManifestError",
    "data_path",
    "data_root",
    "fetch",
    "fetch_item",
    "item_status",
    "list_manifests",
    "load_manifest",
    "local_path",
    "manifest_dir",
    "mirror_setting",
    "verify",
]
