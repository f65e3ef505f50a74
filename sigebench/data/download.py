"""Fetching declared files with pooch, a resuming downloader plugged into its downloader hook.

Where files go:
    ``<data root>/<manifest root>/<item path>``; the data root is ``root=``, else ``$SIGE_DATA``, else ``./data``.
    Archives are extracted to ``<data root>/<manifest root>/<extract_to>``.

Where files come from:
    the item's public URL(s), unless a mirror is set (``mirror=`` or ``$SIGE_DATA_MIRROR``): a local folder, a
    ``file://`` URL or an ``http(s)://`` base laid out like the data root, used *instead* of the public URLs
    (``<mirror>/<manifest root>/<item path>``, or ``<mirror>/<item path>``). For an archive a local mirror may
    hold the archive or the already-extracted folder, which is then linked in.

How:
    :class:`pooch.Pooch` checks the declared checksum (sha256, else md5), downloads into a temporary file and
    moves it into place only when it matches; pooch's Unzip/Untar extract archives. Its downloader is
    :class:`ResumingDownloader`: HTTP(S) with a timeout (``$SIGE_DATA_TIMEOUT``, default 30 s) and up to
    :data:`RETRIES` tries with exponential backoff, the bytes kept in ``<file>.part`` so that an interrupted
    multi-GB transfer resumes with an HTTP ``Range`` request (a server answering 200 restarts it cleanly); local
    mirror files are copied. A checksum mismatch deletes the file and fetches it once more; a second one raises
    :class:`ChecksumError`. Files already present and valid are never fetched again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urlsplit

from .errors import ChecksumError, DataError, DownloadError
from .manifest import Item, Manifest, load_manifest

try:  # POSIX file locks keep two processes from writing the same .part; optional elsewhere.
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RETRIES",
    "RETRY_BACKOFF_S",
    "ResumingDownloader",
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
_NET_CHUNK = 1 << 16  # small reads, so a broken connection leaves most of what arrived in the .part
_USER_AGENT = "sigebench-data/0.2 (+https://github.com/lmxyy/sige)"
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
    """``"present"``, ``"missing"``, ``"unverified"`` (present, no checksum declared), ``"corrupt: ..."`` (with
    ``deep``, which hashes the file) or ``"wrong size: ..."``."""
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
    """Make one item present and verified under the data root; return its path (the extracted folder for an
    archive). Raises :class:`DownloadError` (the message says how to use a mirror) or :class:`ChecksumError`."""
    m = load_manifest(manifest)
    it = _resolve_item(m, item)
    base = _base(m, root)
    target = base / it.target
    if _present(base, it):  # fast path, no lock: works on a read-only data root
        return target
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create the data folder {base} ({e.strerror or e}); set SIGE_DATA to a writable folder"
        ) from e
    with _lock(data_root(root), m, it):
        if _present(base, it):
            return target
        return _Job(m, it, base, mirror_setting(mirror), quiet).run()


def fetch(
    manifest: str | Manifest,
    items: Iterable[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    quiet: bool = False,
) -> dict[str, Path]:
    """Fetch several items of a manifest (all of them by default); return ``{item path: local path}``."""
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
    """Local path of a data file, fetching it first if needed (what benchmarks call). ``item_path`` is an item's
    ``path`` or a path inside an archive item's ``extract_to`` folder, e.g. ``data_path("example_edits",
    "engine/mask.npy")`` or ``data_path("lsun_church_sdedit", "church_outdoor_sdedit/original/000.png")``."""
    m = load_manifest(manifest_name)
    it, rel = m.find(item_path)
    try:
        fetch_item(m, it, root=root, mirror=mirror, quiet=quiet)
    except OSError as e:  # a data root under a file, permissions, a full disk: one line naming the path
        raise DataError(f"{m.name}:{it.path}: {e.strerror or e} ({e.filename or _base(m, root)})") from e
    p = _base(m, root) / rel
    if not p.exists():
        raise DataError(f"{m.name}: {rel} is not in the fetched item {it.target} ({_base(m, root) / it.target})")
    return p


# ----------------------------------------------------------------------------------------- the downloader


class _TransientError(Exception):
    """A failure worth retrying (connection trouble, timeout, truncated body, HTTP 5xx)."""


class ResumingDownloader:
    """pooch downloader: HTTP(S) with resume (``<dest>.part`` + ``Range``) and retries, or a local copy.

    Called by pooch as ``downloader(url, output_file, pooch)``; the bytes are collected in ``self.part`` (kept
    across runs when a transfer breaks) and moved to ``output_file`` once complete.
    """

    def __init__(self, part: Path, size: int | None, label: str, quiet: bool):
        self.part, self.size, self.label, self.quiet = part, size, label, quiet

    def __call__(self, url: str, output_file: str, pooch: object, check_only: bool = False) -> None:
        local = _local_path_of(url)
        if local is not None:
            self._copy(local)
        else:
            self._http(url)
        if self.size is not None and self.part.stat().st_size != self.size:
            n = self.part.stat().st_size
            self.part.unlink()
            raise ValueError(f"size {n} bytes, expected {self.size}")
        os.replace(self.part, output_file)

    # -- local files
    def _copy(self, src: Path) -> None:
        if not src.is_file():
            raise DownloadError("no such file")
        try:
            with open(src, "rb") as fin, open(self.part, "wb") as fout:
                with self._bar(src.stat().st_size, 0) as bar:
                    while chunk := fin.read(_CHUNK):
                        fout.write(chunk)
                        bar.update(len(chunk))
                fout.flush()
                os.fsync(fout.fileno())
        except OSError as e:
            raise DownloadError(f"copy failed: {e}") from e

    # -- HTTP
    def _http(self, url: str) -> None:
        last: Exception | None = None
        for attempt in range(RETRIES):
            if attempt:
                time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
            try:
                self._http_once(url)
                return
            except _TransientError as e:
                last = e
        raise _TransientError(f"{last} (gave up after {RETRIES} tries)")

    def _http_once(self, url: str) -> None:
        import requests

        offset = self.part.stat().st_size if self.part.is_file() else 0
        if self.size is not None and offset > self.size:
            self.part.unlink()
            offset = 0
        if self.size is not None and offset == self.size and offset > 0:
            return  # a complete .part from an earlier run; verification decides
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = requests.get(url, headers=headers, stream=True, timeout=_timeout())
        except requests.RequestException as e:
            raise _TransientError(f"{type(e).__name__}: {e}") from e
        with resp:
            if resp.status_code == 416 and offset:
                if self.size is None:
                    return  # the .part already holds everything the server has; verification decides
                self.part.unlink()
                raise _TransientError("the server refused to resume (HTTP 416); restarting")
            if resp.status_code in (408, 429) or resp.status_code >= 500:
                raise _TransientError(f"HTTP {resp.status_code} {resp.reason}")
            if resp.status_code == 206:
                start = _content_range_start(resp.headers.get("Content-Range"))
                if start != offset:
                    self.part.unlink()
                    raise _TransientError(f"the server resumed at byte {start}, not {offset}; restarting")
                mode = "ab"
            elif resp.status_code == 200:
                if offset:
                    _say(f"{self.label}: the server ignored the resume request; restarting the download")
                offset, mode = 0, "wb"
            else:
                raise DownloadError(f"HTTP {resp.status_code} {resp.reason}")
            length = resp.headers.get("Content-Length")
            remaining = int(length) if length and length.isdigit() else None
            received = 0
            try:
                with (
                    open(self.part, mode) as fh,
                    self._bar(offset + remaining if remaining else self.size, offset) as bar,
                ):
                    for chunk in resp.iter_content(_NET_CHUNK):
                        fh.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                    fh.flush()
                    os.fsync(fh.fileno())
            except (OSError, requests.RequestException) as e:
                raise _TransientError(
                    f"transfer interrupted after {offset + received} bytes: {type(e).__name__}: {e}"
                ) from e
            if remaining is not None and received < remaining:
                raise _TransientError(f"connection closed after {offset + received} of {offset + remaining} bytes")

    def _bar(self, total: int | None, initial: int):
        from tqdm import tqdm

        return tqdm(
            total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=self.label,
            file=sys.stderr, leave=False, disable=self.quiet or not sys.stderr.isatty(),
        )  # fmt: skip


# ------------------------------------------------------------------------------------------- one fetch


class _Job:
    """Fetch one item: choose the sources, let pooch download and verify, extract archives."""

    def __init__(self, m: Manifest, it: Item, base: Path, mirror: str | None, quiet: bool) -> None:
        self.m, self.it, self.base, self.mirror, self.quiet = m, it, base, mirror, quiet
        self.dest = base / it.path
        self.target = base / it.target
        self.label = f"{m.name}:{it.path}"

    def run(self) -> Path:
        it = self.it
        if not it.archive:
            if self.dest.is_file():
                problem = _check_file(self.dest, it)
                _say(f"{self.label}: the local file {self.dest} is corrupt ({problem}); fetching it again")
                self.dest.unlink()
            self._obtain()
            return self.dest
        if self.mirror and self._link_mirror_folder():
            return self.target
        if not (self.dest.is_file() and _check_file(self.dest, it) is None):
            self._obtain()
        self._extract()
        if not it.keep_archive:
            self.dest.unlink(missing_ok=True)
        return self.target

    # -- sources
    def _mirror_rels(self, rel: str) -> list[str]:
        return [f"{self.m.root}/{rel}", rel] if self.m.root else [rel]

    def _mirror_local_dir(self) -> Path | None:
        if self.mirror is None:
            return None
        scheme = urlsplit(self.mirror).scheme.lower()
        if scheme in ("http", "https"):
            return None
        path = _local_path_of(self.mirror)
        return (path or Path(self.mirror)).expanduser().resolve()

    def _sources(self) -> list[str]:
        if self.mirror is None:
            return list(self.it.urls)
        local = self._mirror_local_dir()
        if local is None:
            base = self.mirror.rstrip("/")
            return [f"{base}/{quote(r)}" for r in self._mirror_rels(self.it.path)]
        return [str(local / r) for r in self._mirror_rels(self.it.path)]

    # -- transfer through pooch
    def _obtain(self) -> None:
        import pooch

        it = self.it
        known = f"sha256:{it.sha256}" if it.sha256 else (f"md5:{it.md5}" if it.md5 else None)
        part = self.dest.with_name(self.dest.name + ".part")
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        failures: list[str] = []
        unreachable: set[str] = set()
        for src in self._sources():
            host = urlsplit(src).netloc if urlsplit(src).scheme in ("http", "https") else ""
            if host and host in unreachable:
                continue
            for attempt in (1, 2):
                pup = pooch.Pooch(path=self.dest.parent, base_url="", registry={self.dest.name: known},
                                  urls={self.dest.name: src}, retry_if_failed=0)  # fmt: skip
                downloader = ResumingDownloader(part, it.size, it.path, self.quiet)
                try:
                    with _quiet_pooch():
                        pup.fetch(self.dest.name, downloader=downloader)
                except ValueError as e:  # checksum or size mismatch (pooch deleted the download)
                    part.unlink(missing_ok=True)
                    if attempt == 1:
                        _say(f"{self.label}: checksum mismatch ({e}) from {src}; deleted it, fetching it again")
                        continue
                    raise ChecksumError(
                        f"{self.label}: the file fetched from {src} is corrupt even after a re-fetch: {e} "
                        f"(destination {self.dest}; expected {it.sha256 or it.md5})"
                    ) from None
                except _TransientError as e:
                    failures.append(f"{src}: {e}")
                    unreachable.add(host)
                    break
                except DownloadError as e:
                    failures.append(f"{src}: {e}")
                    break
                _fsync_dir(self.dest.parent)
                if not it.verified:
                    note = f" ({it.checksum_note})" if it.checksum_note else ""
                    _say(f"WARNING: {self.label} from {src} is UNVERIFIED: the manifest declares no trusted "
                         f"checksum{note}. Its integrity was not checked.")  # fmt: skip
                return
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
        return (
            f"could not fetch {self.label} from the mirror SIGE_DATA_MIRROR={self.mirror} ({what}). Put {held} "
            f"in the mirror, unset SIGE_DATA_MIRROR to use the public URL {', '.join(self.it.urls)}, or place the "
            f"file at {self.dest} by hand."
        )

    # -- archives
    def _link_mirror_folder(self) -> bool:
        """Use an already-extracted folder from a local mirror (linked, or copied without a layout)."""
        local = self._mirror_local_dir()
        if local is None or self.it.extract_to is None:
            return False
        target = self.target
        for rel in self._mirror_rels(self.it.extract_to):
            src = local / rel
            if not src.is_dir() or (self.it.layout and _layout_missing(src, self.it)):
                continue
            self._clear_target()
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
            return True
        return False

    def _clear_target(self) -> None:
        target = self.target
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            if any(target.iterdir()):
                raise DownloadError(
                    f"{self.label}: {target} exists but is incomplete (missing "
                    f"{', '.join(_layout_missing(target, self.it)) or 'its completion marker'}); remove it and retry"
                )
            target.rmdir()

    def _extract(self) -> None:
        import pooch

        it, target = self.it, self.target
        tmp_name = f".{target.name}.extracting-{os.getpid()}"
        tmp = self.dest.parent / tmp_name
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            if not self.quiet:
                _say(f"{self.label}: extracting into {target}")
            try:
                _check_members(self.dest, it.archive)
                processor = (
                    pooch.Unzip(extract_dir=tmp_name) if it.archive == "zip" else pooch.Untar(extract_dir=tmp_name)
                )
                with _quiet_pooch():
                    processor(str(self.dest), "download", None)
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
            self._clear_target()
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(content, target)
            _fsync_dir(target.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------- internals


def _resolve_item(m: Manifest, item: str | Item) -> Item:
    return item if isinstance(item, Item) else m.item(item)


def _base(m: Manifest, root: str | os.PathLike[str] | None) -> Path:
    r = data_root(root)
    if r.exists() and not r.is_dir():
        raise DataError(f"the data root {r} is a file, not a folder; set SIGE_DATA to a folder")
    return r / m.root if m.root else r


def _local_path_of(url: str) -> Path | None:
    """The filesystem path of a ``file://`` URL or a plain path; None for network URLs."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        return Path(unquote(parts.path))
    if parts.scheme.lower() in ("http", "https", "ftp", "sftp"):
        return None
    return Path(url)


def _present(base: Path, it: Item) -> bool:
    if it.archive:
        return _extracted_ok(base / it.target, it)
    dest = base / it.path
    return dest.is_file() and _check_file(dest, it) is None


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(level)


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


def _check_file(path: Path, it: Item) -> str | None:
    """None when ``path`` matches the item's size and checksums (cached per path, size and mtime), else what
    does not match."""
    st = path.stat()
    if it.size is not None and st.st_size != it.size:
        return f"size {st.st_size} bytes, expected {it.size}"
    if not it.verified:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    want = frozenset(it.checksums.items())
    if _VERIFIED.get(key) == want:
        return None
    hashers = {a: hashlib.new(a) for a in it.checksums}
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            for h in hashers.values():
                h.update(chunk)
    for algo, expected in it.checksums.items():
        got = hashers[algo].hexdigest()
        if got != expected:
            return f"{algo} {got}, expected {expected}"
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


def _check_members(archive: Path, kind: str | None) -> None:
    """Refuse archives with members that would land outside the extraction folder (or links and devices)."""
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            bad = [n for n in zf.namelist() if not _safe_member(n)]
    else:
        with tarfile.open(archive, "r:*") as tf:
            bad = [m.name for m in tf.getmembers() if not _safe_member(m.name) or m.issym() or m.islnk() or m.isdev()]
    if bad:
        raise DownloadError(f"refusing to extract {archive}: unsafe member path {bad[0]!r}")


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
