"""Dataset manifests: YAML files in ``datasets/`` that declare every downloadable item.

Schema (one file per dataset, ``datasets/<name>.yaml``)::

    name: example_edits            # required; must equal the file name without .yaml
    description: ...               # optional free text
    license: ...                   # optional free text
    homepage: ...                  # optional
    base_url: https://host/dir/    # optional; relative item URLs are joined to it
    root: edits                    # folder under the data root and under a mirror (default: name; "." = none)
    layout: {...}                  # optional, documentation only
    items:
      - path: engine/mask.npy      # required; relative path under <data root>/<root> (and <mirror>/<root>)
        url: assets/mask.npy       # required; relative to base_url or absolute; or a list of mirrors
        sha256: 74ec...            # a checksum: sha256 and/or md5 (hex) ...
        md5: 149d...
        checksum: none             # ... or explicitly none, and then
        checksum_note: why         #     a note saying why is required
        size: 65664                # optional, bytes
        archive: zip               # optional: zip | tar | tar.gz | tgz | tar.bz2 | tar.xz
        extract_to: folder/        # required with archive; relative to <data root>/<root>
        keep_archive: false        # optional; keep the archive after extraction (default false)
        layout:                    # optional; entries (folders end with "/") that must exist after
          original/: 454 images    #   extraction; a mapping entry -> description, or a plain list
        description: ...           # optional

Unknown keys are rejected, so a typo never silently drops a checksum.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from .errors import ManifestError

__all__ = [
    "ARCHIVE_FORMATS",
    "Item",
    "Manifest",
    "list_manifests",
    "load_manifest",
    "manifest_dir",
]

#: Archive formats the downloader can extract.
ARCHIVE_FORMATS = ("zip", "tar", "tar.gz", "tgz", "tar.bz2", "tar.xz")

_HEX = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "md5": re.compile(r"^[0-9a-f]{32}$")}
_MANIFEST_KEYS = {"name", "description", "license", "homepage", "base_url", "root", "layout", "items"}
_ITEM_KEYS = {
    "path",
    "url",
    "sha256",
    "md5",
    "checksum",
    "checksum_note",
    "size",
    "archive",
    "extract_to",
    "keep_archive",
    "layout",
    "description",
}


@dataclass(frozen=True)
class Item:
    """One downloadable file of a manifest.

    Attributes:
        path: Relative POSIX path of the file under ``<data root>/<manifest root>`` (and under a mirror).
        urls: Absolute public URLs, tried in order.
        sha256: Expected lowercase hex SHA-256, or ``None``.
        md5: Expected lowercase hex MD5, or ``None``.
        checksum_note: Why no checksum is declared (only when both checksums are ``None``).
        size: Expected size in bytes, or ``None`` when unknown.
        archive: Archive format (see :data:`ARCHIVE_FORMATS`) or ``None`` for a plain file.
        extract_to: Relative folder the archive is extracted into (archives only).
        keep_archive: Keep the archive file after a successful extraction.
        layout: Entries (relative to ``extract_to`` for archives) that must exist; folders end with ``/``.
        description: Free text.
    """

    path: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    checksum_note: str | None = None
    size: int | None = None
    archive: str | None = None
    extract_to: str | None = None
    keep_archive: bool = False
    layout: tuple[str, ...] = ()
    description: str = ""

    @property
    def verified(self) -> bool:
        """Whether the item declares at least one checksum."""
        return self.sha256 is not None or self.md5 is not None

    @property
    def checksums(self) -> dict[str, str]:
        """Declared checksums as ``{algorithm: hex}``."""
        out = {}
        if self.sha256:
            out["sha256"] = self.sha256
        if self.md5:
            out["md5"] = self.md5
        return out

    @property
    def target(self) -> str:
        """The relative path benchmarks use: ``extract_to`` for archives, ``path`` otherwise."""
        return self.extract_to if self.archive else self.path


@dataclass(frozen=True)
class Manifest:
    """A parsed dataset manifest (see the module docstring for the YAML schema)."""

    name: str
    items: tuple[Item, ...]
    root: str = ""
    description: str = ""
    license: str = ""
    homepage: str = ""
    base_url: str | None = None
    layout: Any = None
    source: Path | None = field(default=None, compare=False)

    def item(self, path: str) -> Item:
        """Return the item whose ``path`` (or archive ``extract_to``) equals ``path``.

        Raises:
            ManifestError: no such item.
        """
        key = _norm_rel(path, "item path", allow_dot=False, strict=False)
        for it in self.items:
            if it.path == key or (it.extract_to is not None and it.extract_to == key):
                return it
        known = ", ".join(it.path for it in self.items)
        raise ManifestError(f"manifest {self.name!r} has no item {path!r} (items: {known})")

    def find(self, path: str) -> tuple[Item, str]:
        """Find the item that provides ``path``, which may also lie inside an archive's ``extract_to``.

        Returns:
            ``(item, relative path under the manifest root)``.
        """
        key = _norm_rel(path, "item path", allow_dot=False, strict=False)
        for it in self.items:
            if it.path == key:
                return it, (it.target if it.archive else key)
            if it.extract_to is not None and (key == it.extract_to or key.startswith(it.extract_to + "/")):
                return it, key
        return self.item(path), key  # raises with the list of known items


def manifest_dir() -> Path:
    """Return the folder holding the manifests.

    ``$SIGE_MANIFESTS`` if set; otherwise the ``datasets/`` folder of the repository root, found by
    walking up from this file (then from the working directory) to a folder that holds both
    ``datasets/`` and ``pyproject.toml``.

    Raises:
        ManifestError: no such folder.
    """
    env = os.environ.get("SIGE_MANIFESTS")
    if env:
        p = Path(env).expanduser().resolve()
        if not p.is_dir():
            raise ManifestError(f"SIGE_MANIFESTS={env!r} is not a folder")
        return p
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for d in (start, *start.parents):
            if (d / "datasets").is_dir() and (d / "pyproject.toml").is_file():
                return d / "datasets"
    raise ManifestError(
        "could not find the datasets/ manifest folder (looked above this package and the working "
        "directory for a folder holding datasets/ and pyproject.toml); set SIGE_MANIFESTS to it"
    )


def list_manifests() -> list[str]:
    """Names of the manifests in :func:`manifest_dir`, sorted."""
    return sorted(p.stem for p in manifest_dir().glob("*.yaml"))


def load_manifest(name_or_path: str | os.PathLike[str] | Manifest) -> Manifest:
    """Load and validate a manifest.

    Args:
        name_or_path: A manifest name (``"example_edits"`` -> ``datasets/example_edits.yaml``), a path to a
            YAML file, or an already loaded :class:`Manifest` (returned unchanged).

    Raises:
        ManifestError: the file is missing or does not follow the schema.
    """
    if isinstance(name_or_path, Manifest):
        return name_or_path
    text = os.fspath(name_or_path)
    p = Path(text)
    if p.suffix in (".yaml", ".yml") or os.sep in text or "/" in text:
        path = p.expanduser()
    else:
        path = manifest_dir() / f"{text}.yaml"
    if not path.is_file():
        hint = ""
        try:
            known = list_manifests()
            hint = f" (known: {', '.join(known)})" if known else f" (no manifests in {manifest_dir()})"
        except ManifestError:
            pass
        raise ManifestError(f"no manifest {text!r}: {path} does not exist{hint}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ManifestError(f"cannot read manifest {path}: {e}") from e
    return parse_manifest(raw, source=path.resolve())


def parse_manifest(raw: Any, source: Path | None = None) -> Manifest:
    """Validate a manifest already parsed from YAML (a mapping) and build a :class:`Manifest`."""
    where = str(source) if source else "<manifest>"
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: a manifest must be a mapping")
    _check_keys(raw, _MANIFEST_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ManifestError(f"{where}: 'name' must be a simple identifier, got {name!r}")
    if source is not None and source.stem != name:
        raise ManifestError(f"{where}: name {name!r} does not match the file name {source.name!r}")
    base_url = raw.get("base_url")
    if base_url is not None and (not isinstance(base_url, str) or not urlsplit(base_url).scheme):
        raise ManifestError(f"{where}: 'base_url' must be an absolute URL, got {base_url!r}")
    root = raw.get("root", name)
    if not isinstance(root, str):
        raise ManifestError(f"{where}: 'root' must be a string")
    root = "" if root.strip() in ("", ".") else _norm_rel(root, f"{where}: root", allow_dot=False)
    items_raw = raw.get("items")
    if not isinstance(items_raw, list) or not items_raw:
        raise ManifestError(f"{where}: 'items' must be a non-empty list")
    items = tuple(_parse_item(it, base_url, f"{where}: items[{i}]") for i, it in enumerate(items_raw))
    seen: set[str] = set()
    for it in items:
        for key in {it.path, it.target}:
            if key in seen:
                raise ManifestError(f"{where}: path {key!r} is declared twice")
            seen.add(key)
    return Manifest(
        name=name,
        items=items,
        root=root,
        description=str(raw.get("description") or "").strip(),
        license=str(raw.get("license") or "").strip(),
        homepage=str(raw.get("homepage") or ""),
        base_url=base_url,
        layout=raw.get("layout"),
        source=source,
    )


def _parse_item(raw: Any, base_url: str | None, where: str) -> Item:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: an item must be a mapping")
    _check_keys(raw, _ITEM_KEYS, where)
    if not isinstance(raw.get("path"), str):
        raise ManifestError(f"{where}: 'path' (a string) is required")
    path = _norm_rel(raw["path"], f"{where}: path", allow_dot=False)
    where = f"{where} ({path})"

    url = raw.get("url")
    urls_raw = url if isinstance(url, list) else [url]
    if not urls_raw or not all(isinstance(u, str) and u for u in urls_raw):
        raise ManifestError(f"{where}: 'url' must be a string or a non-empty list of strings")
    urls = tuple(_join_url(base_url, u, where) for u in urls_raw)

    sums: dict[str, str | None] = {}
    for algo in ("sha256", "md5"):
        v = raw.get(algo)
        if v is not None:
            v = str(v).strip().lower()
            if not _HEX[algo].match(v):
                raise ManifestError(f"{where}: {algo} {raw.get(algo)!r} is not a valid hex digest")
        sums[algo] = v
    checksum = raw.get("checksum")
    note = raw.get("checksum_note")
    if checksum is not None and str(checksum).lower() != "none":
        raise ManifestError(f"{where}: 'checksum' may only be 'none' (use sha256: or md5: for a digest)")
    if sums["sha256"] is None and sums["md5"] is None:
        if checksum is None or str(checksum).lower() != "none":
            raise ManifestError(f"{where}: declare sha256 or md5, or 'checksum: none' with a 'checksum_note'")
        if not isinstance(note, str) or not note.strip():
            raise ManifestError(f"{where}: 'checksum: none' requires a 'checksum_note' saying why")
    elif checksum is not None:
        raise ManifestError(f"{where}: 'checksum: none' contradicts the declared digest")

    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ManifestError(f"{where}: 'size' must be a non-negative integer (bytes)")

    archive = raw.get("archive")
    extract_to = raw.get("extract_to")
    if archive is not None:
        archive = str(archive).lower()
        if archive not in ARCHIVE_FORMATS:
            raise ManifestError(f"{where}: unknown archive format {archive!r} (known: {', '.join(ARCHIVE_FORMATS)})")
        if not isinstance(extract_to, str):
            raise ManifestError(f"{where}: an archive item needs 'extract_to' (a folder)")
        extract_to = _norm_rel(extract_to, f"{where}: extract_to", allow_dot=False)
        if extract_to == path:
            raise ManifestError(f"{where}: 'extract_to' must differ from 'path'")
    elif extract_to is not None or raw.get("keep_archive") is not None:
        raise ManifestError(f"{where}: 'extract_to'/'keep_archive' need 'archive'")

    layout_raw = raw.get("layout")
    if layout_raw is None:
        layout: tuple[str, ...] = ()
    elif isinstance(layout_raw, dict | list):
        entries = list(layout_raw)
        if not all(isinstance(e, str) for e in entries):
            raise ManifestError(f"{where}: 'layout' entries must be strings")
        layout = tuple(e.strip() for e in entries)
        for e in layout:
            _norm_rel(e.rstrip("/"), f"{where}: layout entry", allow_dot=False)
    else:
        raise ManifestError(f"{where}: 'layout' must be a mapping (entry: description) or a list")

    return Item(
        path=path,
        urls=urls,
        sha256=sums["sha256"],
        md5=sums["md5"],
        checksum_note=note.strip() if isinstance(note, str) else None,
        size=size,
        archive=archive,
        extract_to=extract_to,
        keep_archive=bool(raw.get("keep_archive", False)),
        layout=layout,
        description=str(raw.get("description") or "").strip(),
    )


def _check_keys(raw: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _join_url(base_url: str | None, url: str, where: str) -> str:
    if urlsplit(url).scheme:
        return url
    if base_url is None:
        raise ManifestError(f"{where}: relative url {url!r} needs a manifest 'base_url'")
    return base_url.rstrip("/") + "/" + url.lstrip("/")


def _norm_rel(path: str, what: str, *, allow_dot: bool, strict: bool = True) -> str:
    """Normalise a relative POSIX path, rejecting absolute paths and ``..`` components."""
    p = path.strip().replace("\\", "/").rstrip("/")
    parts = [x for x in PurePosixPath(p).parts if x != "."]
    bad = not p or p.startswith("/") or ".." in parts or (not parts and not allow_dot)
    if bad:
        if strict:
            raise ManifestError(f"{what}: {path!r} must be a relative path inside the data root")
        return p
    return "/".join(parts)
