"""The one downloader behind every manifest: resumable, verified, atomic, with a progress bar.

Where files go:
    ``<data root>/<manifest root>/<item path>``, with the data root from ``root=``, else ``$SIGE_DATA``, else
    ``./data`` (resolved against the working directory). Archives are extracted to
    ``<data root>/<manifest root>/<extract_to>``.

Where files come from:
    the item's public URL(s), unless a mirror is set (``mirror=`` or ``$SIGE_DATA_MIRROR``): a local folder, a
    ``file://`` URL or an ``http(s)://`` base laid out like the data root. The mirror is then used *instead*
    of the public URLs: ``<mirror>/<manifest root>/<item path>`` (or ``<mirror>/<item path>``). For an
    archive, a local mirror may hold the archive or the already-extracted folder, which is linked in.

How:
    HTTP(S) through :mod:`urllib` with a timeout (``$SIGE_DATA_TIMEOUT``, default 30 s) and a bounded number
    of tries with exponential backoff. Bytes go to ``<file>.part``; an interrupted transfer resumes with an
    HTTP ``Range`` request (a server that answers 200 instead restarts it cleanly). The finished ``.part``
    is fsynced, checked against the declared sha256/md5/size and only then moved into place with
    :func:`os.replace`. A checksum mismatch deletes the file and fetches it once more; a second mismatch
    raises :class:`ChecksumError`. Files already present with a valid checksum are never fetched again.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

from .errors import ChecksumError, DataError, DownloadError
from .manifest import Item, Manifest, load_manifest

try:  # POSIX file locks keep two processes from writing the same .part; optional elsewhere.
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RETRIES",
    "RETRY_BACKOFF_S",
    "data_path",
    "data_root",
    "fetch",
    "fetch_item",
    "item_status",
    "local_path",
    "mirror_setting",
    "verify",
]

#: Tries per URL for transient failures (connection errors, timeouts, truncated bodies, HTTP 5xx/429).
RETRIES = 3
#: Backoff before the n-th retry is ``RETRY_BACKOFF_S * 2**(n-1)`` seconds.
RETRY_BACKOFF_S = 1.0
#: Default socket timeout (seconds) when ``$SIGE_DATA_TIMEOUT`` is not set.
DEFAULT_TIMEOUT_S = 30.0

_CHUNK = 1 << 20
_USER_AGENT = "sige-data/0.1 (+https://github.com/lmxyy/sige)"
_LOCK_DIR = ".sige-locks"
_MARKER = ".sige-complete"
_VERIFIED: dict[tuple[str, int, int], frozenset[tuple[str, str]]] = {}


# --------------------------------------------------------------------------------------------- settings


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The absolute data root: ``root`` if given, else ``$SIGE_DATA``, else ``./data``."""
    value = root if root is not None else (os.environ.get("SIGE_DATA") or "data")
    return Path(value).expanduser().resolve()


def mirror_setting(mirror: str | os.PathLike[str] | None = None) -> str | None:
    """The mirror in use: ``mirror`` if given, else ``$SIGE_DATA_MIRROR``; ``""`` disables it (returns None)."""
    value = os.fspath(mirror) if mirror is not None else os.environ.get("SIGE_DATA_MIRROR", "")
    return value.strip() or None


def _timeout() -> float:
    try:
        return float(os.environ.get("SIGE_DATA_TIMEOUT") or DEFAULT_TIMEOUT_S)
    except ValueError:
        return DEFAULT_TIMEOUT_S


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- public API


def local_path(manifest: str | Manifest, item: str | Item, root: str | os.PathLike[str] | None = None) -> Path:
    """Where ``item`` lives once fetched (its extracted folder for an archive). Does not fetch."""
    m = load_manifest(manifest)
    it = _resolve_item(m, item)
    return _base(m, root) / it.target


def item_status(
    manifest: str | Manifest, item: str | Item, root: str | os.PathLike[str] | None = None, deep: bool = False
) -> str:
    """Describe the local state of an item.

    Args:
        deep: hash the file (otherwise only existence and size are checked).

    Returns:
        One of ``"present"``, ``"missing"``, ``"unverified"`` (present, no checksum declared),
        ``"corrupt: ..."`` (deep only) or ``"wrong size: ..."``.
    """
    m = load_manifest(manifest)
    it = _resolve_item(m, item)
    base = _base(m, root)
    if it.archive:
        return "present" if _extracted_ok(base / it.target, it) else "missing"
    dest = base / it.path
    if not dest.is_file():
        return "missing"
    size = dest.stat().st_size
    if it.size is not None and size != it.size:
        return f"wrong size: {size} bytes, expected {it.size}"
    if not it.verified:
        return "unverified"
    if deep:
        problem = _check_file(dest, it)
        if problem:
            return f"corrupt: {problem}"
    return "present"


def verify(manifest: str | Manifest, root: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Hash every present item of ``manifest``; return ``{item path: status}`` (see :func:`item_status`)."""
    m = load_manifest(manifest)
    return {it.path: item_status(m, it, root, deep=True) for it in m.items}


def fetch_item(
    manifest: str | Manifest,
    item: str | Item,
    root: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    quiet: bool = False,
) -> Path:
    """Make one item present and verified under the data root; return its local path.

    Nothing is fetched when the file is already present with a valid checksum (or, for an archive, when its
    extracted folder holds the declared layout).

    Args:
        manifest: manifest name, YAML path or :class:`Manifest`.
        item: the item's ``path`` (or its archive's ``extract_to``), or an :class:`Item`.
        root: data root (default ``$SIGE_DATA`` or ``./data``).
        mirror: local folder, ``file://`` or ``http(s)://`` base used instead of public URLs
            (default ``$SIGE_DATA_MIRROR``; ``""`` forces the public URLs).
        quiet: no progress bar (it is also off when stderr is not a terminal).

    Returns:
        The file's path, or the extracted folder for an archive.

    Raises:
        DownloadError: the file could not be fetched (the message says how to use a mirror).
        ChecksumError: the file is still corrupt after one re-fetch.
    """
    m = load_manifest(manifest)
    it = _resolve_item(m, item)
    job = _Job(m, it, _base(m, root), mirror_setting(mirror), quiet)
    if job.present():  # fast path, no lock: works on a read-only data root
        return job.target
    with _lock(data_root(root), m, it):
        return job.run()


def fetch(
    manifest: str | Manifest,
    items: Iterable[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    quiet: bool = False,
) -> dict[str, Path]:
    """Fetch several items of a manifest (all of them by default); return ``{item path: local path}``.

    Arguments are those of :func:`fetch_item`; ``items`` lists item paths.
    """
    m = load_manifest(manifest)
    chosen = list(m.items) if items is None else [m.item(p) for p in items]
    return {it.path: fetch_item(m, it, root=root, mirror=mirror, quiet=quiet) for it in chosen}


def data_path(
    manifest_name: str | Manifest,
    item_path: str,
    root: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    quiet: bool = False,
) -> Path:
    """Local path of a data file, fetching it first if needed. This is what benchmarks call.

    ``item_path`` is an item's ``path``, or a path inside an archive item's ``extract_to`` folder, e.g.
    ``data_path("example_edits", "engine/mask.npy")`` or
    ``data_path("lsun_church_sdedit", "church_outdoor_sdedit/original/000.png")``.
    """
    m = load_manifest(manifest_name)
    it, rel = m.find(item_path)
    fetch_item(m, it, root=root, mirror=mirror, quiet=quiet)
    p = _base(m, root) / rel
    if not p.exists():
        raise DataError(f"{m.name}: {rel} is not in the fetched item {it.target} ({_base(m, root) / it.target})")
    return p


# ------------------------------------------------------------------------------------------- internals


def _resolve_item(m: Manifest, item: str | Item) -> Item:
    return item if isinstance(item, Item) else m.item(item)


def _base(m: Manifest, root: str | os.PathLike[str] | None) -> Path:
    r = data_root(root)
    return r / m.root if m.root else r


@contextlib.contextmanager
def _lock(root: Path, m: Manifest, it: Item) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    lock_dir = root / _LOCK_DIR
    name = f"{m.name}__{it.path}".replace("/", "__") + ".lock"
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        fh = open(lock_dir / name, "a")
    except OSError:  # e.g. a read-only data root: the fetch itself will report the real problem
        yield
        return
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _hash_file(path: Path, algos: Iterable[str]) -> dict[str, str]:
    hashers = {a: hashlib.new(a) for a in algos}
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def _check_file(path: Path, it: Item) -> str | None:
    """Return None when ``path`` matches the item's size and checksums, else a description of the mismatch."""
    st = path.stat()
    if it.size is not None and st.st_size != it.size:
        return f"size {st.st_size} bytes, expected {it.size}"
    if not it.verified:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    want = frozenset(it.checksums.items())
    if _VERIFIED.get(key) == want:
        return None
    got = _hash_file(path, it.checksums)
    for algo, expected in it.checksums.items():
        if got[algo] != expected:
            return f"{algo} {got[algo]}, expected {expected}"
    _VERIFIED[key] = want
    return None


def _layout_missing(folder: Path, it: Item) -> list[str]:
    return [e for e in it.layout if not (folder / e.rstrip("/")).exists()]


def _extracted_ok(folder: Path, it: Item) -> bool:
    if not folder.is_dir():
        return False
    if it.layout:
        return not _layout_missing(folder, it)
    return (folder / _MARKER).is_file()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _progress(total: int | None, initial: int, label: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        file=sys.stderr,
        leave=False,
        disable=quiet or not sys.stderr.isatty(),
    )


class _TransientError(Exception):
    """A failure worth retrying (connection trouble, timeout, truncated body, HTTP 5xx)."""


class _PermanentError(Exception):
    """A failure not worth retrying at this URL (HTTP 404, bad response)."""


@dataclass
class _Source:
    kind: str  # "http" or "local"
    where: str  # URL or filesystem path

    def __str__(self) -> str:
        return self.where


def _local_from_file_url(url: str) -> str:
    return urllib.request.url2pathname(urlsplit(url).path)


def _public_sources(it: Item) -> list[_Source]:
    out = []
    for u in it.urls:
        scheme = urlsplit(u).scheme.lower()
        if scheme == "file":
            out.append(_Source("local", _local_from_file_url(u)))
        else:
            out.append(_Source("http", u))
    return out


class _Job:
    """Fetch one item: choose the sources, download/copy, verify, move into place, extract."""

    def __init__(self, m: Manifest, it: Item, base: Path, mirror: str | None, quiet: bool) -> None:
        self.m, self.it, self.base, self.mirror, self.quiet = m, it, base, mirror, quiet
        self.dest = base / it.path
        self.target = base / it.target
        self.label = f"{m.name}:{it.path}"

    def present(self) -> bool:
        """Whether the item is already in place (valid checksum, or extracted layout for an archive)."""
        if self.it.archive:
            return _extracted_ok(self.target, self.it)
        return self.dest.is_file() and _check_file(self.dest, self.it) is None

    # --- entry point
    def run(self) -> Path:
        it = self.it
        if not it.archive:
            if self.dest.is_file():
                problem = _check_file(self.dest, it)
                if problem is None:
                    return self.dest
                _say(f"{self.label}: the local file {self.dest} is corrupt ({problem}); fetching it again")
            self._obtain_file()
            return self.dest
        target = self.target
        if _extracted_ok(target, it):
            return target
        if self.mirror and self._link_mirror_folder(target):
            return target
        if not (self.dest.is_file() and _check_file(self.dest, it) is None):
            self._obtain_file()
        self._extract(target)
        if not it.keep_archive:
            _unlink(self.dest)
        return target

    # --- where to get bytes
    def _mirror_rels(self, rel: str) -> list[str]:
        return [f"{self.m.root}/{rel}", rel] if self.m.root else [rel]

    def _mirror_local_dir(self) -> Path | None:
        if self.mirror is None:
            return None
        scheme = urlsplit(self.mirror).scheme.lower()
        if scheme == "file":
            return Path(_local_from_file_url(self.mirror)).expanduser().resolve()
        if scheme in ("http", "https"):
            return None
        return Path(self.mirror).expanduser().resolve()

    def _sources(self) -> list[_Source]:
        if self.mirror is None:
            return _public_sources(self.it)
        local = self._mirror_local_dir()
        if local is None:
            base = self.mirror.rstrip("/")
            return [_Source("http", f"{base}/{quote(r)}") for r in self._mirror_rels(self.it.path)]
        return [_Source("local", str(local / r)) for r in self._mirror_rels(self.it.path)]

    def _link_mirror_folder(self, target: Path) -> bool:
        """Use an already-extracted folder from a local mirror (linked, or copied without a layout)."""
        local = self._mirror_local_dir()
        if local is None or self.it.extract_to is None:
            return False
        for rel in self._mirror_rels(self.it.extract_to):
            src = local / rel
            if not src.is_dir():
                continue
            if self.it.layout and _layout_missing(src, self.it):
                continue
            self._clear_target(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            if self.it.layout:
                try:
                    target.symlink_to(src, target_is_directory=True)
                except OSError:
                    shutil.copytree(src, target, symlinks=True)
            else:
                tmp = target.with_name(f".{target.name}.copying-{os.getpid()}")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(src, tmp, symlinks=True)
                (tmp / _MARKER).write_text(f"copied from {src}\n")
                os.replace(tmp, target)
            if not self.quiet:
                _say(f"{self.label}: using the extracted folder {src} from SIGE_DATA_MIRROR")
            if not self.it.verified:
                self._warn_unverified(src)
            return True
        return False

    # --- file transfer
    def _obtain_file(self) -> None:
        it = self.it
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        part = self.dest.with_name(self.dest.name + ".part")
        for attempt in (1, 2):
            src = self._transfer(part)
            problem = _check_file(part, it)
            if problem is None:
                os.replace(part, self.dest)
                _fsync_dir(self.dest.parent)
                if not it.verified:
                    self._warn_unverified(src)
                return
            _unlink(part)
            if attempt == 1:
                _say(f"{self.label}: checksum mismatch ({problem}) from {src}; deleted it, fetching it again")
                continue
            raise ChecksumError(
                f"{self.label}: the file fetched from {src} is corrupt even after a re-fetch: {problem} "
                f"(destination {self.dest})"
            )

    def _warn_unverified(self, src: object) -> None:
        note = f" ({self.it.checksum_note})" if self.it.checksum_note else ""
        _say(
            f"WARNING: {self.label} from {src} is UNVERIFIED: the manifest declares no trusted checksum{note}. "
            "Its integrity was not checked."
        )

    def _transfer(self, part: Path) -> _Source:
        """Fill ``part`` from the first source that works; return that source."""
        failures: list[str] = []
        unreachable: set[str] = set()  # hosts that already failed with a network error: don't retry them
        for src in self._sources():
            host = urlsplit(src.where).netloc if src.kind == "http" else ""
            if host and host in unreachable:
                continue
            try:
                if src.kind == "local":
                    self._copy_local(Path(src.where), part)
                else:
                    self._download(src.where, part)
                return src
            except _PermanentError as e:
                failures.append(f"{src}: {e}")
            except _TransientError as e:
                failures.append(f"{src}: {e}")
                unreachable.add(host)
        raise DownloadError(self._failure_message(failures))

    def _failure_message(self, failures: list[str]) -> str:
        what = "; ".join(failures)
        held = f"{self.m.root}/{self.it.path}" if self.m.root else self.it.path
        if self.it.archive and self.it.extract_to:
            ex = f"{self.m.root}/{self.it.extract_to}" if self.m.root else self.it.extract_to
            shown = ", ".join(self.it.layout) or "its files"
            held = f"{held} or the extracted folder {ex}/ (with {shown})"
        if self.mirror is None:
            return (
                f"could not fetch {self.label} ({what}). This machine may be offline: set SIGE_DATA_MIRROR to a "
                f"folder holding {held} (e.g. SIGE_DATA_MIRROR=../shared/data) or place the file at {self.dest} "
                "by hand."
            )
        public = ", ".join(self.it.urls)
        return (
            f"could not fetch {self.label} from the mirror SIGE_DATA_MIRROR={self.mirror} ({what}). Put {held} "
            f"in the mirror, unset SIGE_DATA_MIRROR to use the public URL {public}, or place the file at "
            f"{self.dest} by hand."
        )

    def _copy_local(self, src: Path, part: Path) -> None:
        if not src.is_file():
            raise _PermanentError("no such file")
        try:
            total = src.stat().st_size
            with open(src, "rb") as fin, open(part, "wb") as fout, _progress(total, 0, self.it.path, self.quiet) as bar:
                while chunk := fin.read(_CHUNK):
                    fout.write(chunk)
                    bar.update(len(chunk))
                fout.flush()
                os.fsync(fout.fileno())
        except OSError as e:
            raise _PermanentError(f"copy failed: {e}") from e

    def _download(self, url: str, part: Path) -> None:
        last: Exception | None = None
        for attempt in range(RETRIES):
            if attempt:
                time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
            try:
                self._download_once(url, part)
                return
            except _TransientError as e:
                last = e
        raise _TransientError(f"{last} (gave up after {RETRIES} tries)")

    def _download_once(self, url: str, part: Path) -> None:
        offset = part.stat().st_size if part.is_file() else 0
        size = self.it.size
        if size is not None and offset > size:
            _unlink(part)
            offset = 0
        if size is not None and offset == size and offset > 0:
            return  # a complete .part from an earlier run; verification decides
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        req = urllib.request.Request(url, headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=_timeout())
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset and size is None:
                return  # the .part already holds everything the server has; verification decides
            if e.code == 416:
                _unlink(part)
                raise _TransientError("the server refused to resume (HTTP 416); restarting") from e
            if e.code in (408, 429) or e.code >= 500:
                raise _TransientError(f"HTTP {e.code} {e.reason}") from e
            raise _PermanentError(f"HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e
            raise _TransientError(f"{type(e).__name__}: {reason}") from e

        with resp:
            status = getattr(resp, "status", 200)
            length = resp.headers.get("Content-Length")
            remaining = int(length) if length and length.isdigit() else None
            if status == 206:
                start = _content_range_start(resp.headers.get("Content-Range"))
                if start != offset:
                    _unlink(part)
                    raise _TransientError(f"the server resumed at byte {start}, not {offset}; restarting")
                mode = "ab"
            elif status == 200:
                if offset:
                    _say(f"{self.label}: the server ignored the resume request; restarting the download")
                offset, mode = 0, "wb"
            else:
                raise _PermanentError(f"unexpected HTTP status {status}")
            total = offset + remaining if remaining is not None else size
            received = 0
            try:
                with open(part, mode) as fh, _progress(total, offset, self.it.path, self.quiet) as bar:
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        fh.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                    fh.flush()
                    if remaining is not None and received < remaining:
                        raise _TransientError(
                            f"connection closed after {offset + received} of {offset + remaining} bytes"
                        )
                    os.fsync(fh.fileno())
            except (OSError, http.client.HTTPException) as e:
                raise _TransientError(
                    f"transfer interrupted after {offset + received} bytes: {type(e).__name__}: {e}"
                ) from e

    # --- archives
    def _clear_target(self, target: Path) -> None:
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            if any(target.iterdir()):
                raise DownloadError(
                    f"{self.label}: {target} exists but is incomplete (missing "
                    f"{', '.join(_layout_missing(target, self.it)) or 'its completion marker'}); remove it and retry"
                )
            target.rmdir()

    def _extract(self, target: Path) -> None:
        it = self.it
        tmp = target.with_name(f".{target.name}.extracting-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            if not self.quiet:
                _say(f"{self.label}: extracting into {target}")
            try:
                if it.archive == "zip":
                    _extract_zip(self.dest, tmp)
                else:
                    _extract_tar(self.dest, tmp)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
                raise DownloadError(f"{self.label}: cannot extract {self.dest}: {e}") from e
            content = _content_root(tmp, target.name, it)
            if it.layout and _layout_missing(content, it):
                raise DownloadError(
                    f"{self.label}: the archive does not hold the declared layout "
                    f"(missing {', '.join(_layout_missing(content, it))})"
                )
            if not it.layout:
                (content / _MARKER).write_text(f"extracted from {it.path}\n")
            self._clear_target(target)
            os.replace(content, target)
            _fsync_dir(target.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _safe_member(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return not p.is_absolute() and ".." not in p.parts and not name.startswith("/")


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        bad = [n for n in zf.namelist() if not _safe_member(n)]
        if bad:
            raise DownloadError(f"refusing to extract {archive}: unsafe member path {bad[0]!r}")
        zf.extractall(dest)


def _extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:*") as tf:
        if hasattr(tarfile, "data_filter"):
            try:
                tf.extractall(dest, filter="data")
            except tarfile.FilterError as e:
                raise DownloadError(f"refusing to extract {archive}: {e}") from e
            return
        for m in tf.getmembers():  # pragma: no cover - Python without extraction filters
            if not _safe_member(m.name) or m.issym() or m.islnk() or m.isdev():
                raise DownloadError(f"refusing to extract {archive}: unsafe member {m.name!r}")
        tf.extractall(dest)  # pragma: no cover


def _content_root(tmp: Path, name: str, it: Item) -> Path:
    """The folder inside ``tmp`` that becomes ``extract_to``: ``tmp`` itself, or its single top-level folder."""
    if it.layout and not _layout_missing(tmp, it):
        return tmp
    entries = [p for p in tmp.iterdir() if p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        only = entries[0]
        if (it.layout and not _layout_missing(only, it)) or (not it.layout and only.name == name):
            return only
    return tmp
