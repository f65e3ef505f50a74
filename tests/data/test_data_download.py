"""Downloader tests against a local HTTP server (never the internet)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import zipfile
from pathlib import Path

import pytest

from sigebench.data import ChecksumError, DownloadError, data_path, fetch, fetch_item, item_status, load_manifest

from ._helpers import md5, sha256, write_manifest

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, not a multiple of the chunk size


def _manifest(tmp_path: Path, server, data: bytes = PAYLOAD, **item: object):
    server.add("files/blob.bin", data)
    spec = {"path": "blob/blob.bin", "url": "files/blob.bin", "sha256": sha256(data), "size": len(data)}
    spec.update(item)
    spec = {k: v for k, v in spec.items() if v is not None}
    return load_manifest(write_manifest(tmp_path / "manifests", "t", [spec], base_url=server.url + "/", root="t"))


def test_fresh_download_verifies_and_lands_atomically(tmp_path, server):
    m = _manifest(tmp_path, server)
    out = fetch(m, root=tmp_path / "data", quiet=True)
    dest = tmp_path / "data" / "t" / "blob" / "blob.bin"
    assert out == {"blob/blob.bin": dest}
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("blob.bin.part").exists()
    assert server.ranges("files/blob.bin") == [None]


def test_default_root_is_cwd_data(tmp_path, server):
    m = _manifest(tmp_path, server)
    assert fetch_item(m, "blob/blob.bin", quiet=True) == tmp_path / "data" / "t" / "blob" / "blob.bin"


def test_present_valid_file_makes_no_request(tmp_path, server, no_network):
    m = _manifest(tmp_path, server)
    dest = tmp_path / "data" / "t" / "blob" / "blob.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(PAYLOAD)
    assert fetch_item(m, "blob/blob.bin", root=tmp_path / "data", quiet=True) == dest
    assert server.state.requests == []
    assert not (tmp_path / "data" / ".sige-locks").exists()  # fast path writes nothing (read-only roots work)


def test_interrupted_download_leaves_part_then_resumes_with_range(tmp_path, server):
    m = _manifest(tmp_path, server)
    server.state.drop = 100  # every try dies half-way
    with pytest.raises(DownloadError, match="SIGE_DATA_MIRROR"):
        fetch(m, root=tmp_path / "data", quiet=True)
    part = tmp_path / "data" / "t" / "blob" / "blob.bin.part"
    n = part.stat().st_size
    assert 0 < n < len(PAYLOAD)
    server.state.drop = 0
    server.state.requests.clear()
    fetch(m, root=tmp_path / "data", quiet=True)
    assert server.ranges("files/blob.bin")[0] == f"bytes={n}-"
    assert (tmp_path / "data" / "t" / "blob" / "blob.bin").read_bytes() == PAYLOAD
    assert not part.exists()


def test_drop_once_is_resumed_within_one_fetch(tmp_path, server):
    m = _manifest(tmp_path, server)
    server.state.drop = 1
    fetch(m, root=tmp_path / "data", quiet=True)
    ranges = server.ranges("files/blob.bin")
    # the retry resumes where the stored bytes end (the server broke off after half; the HTTP client keeps
    # whole 64 KiB reads of what arrived)
    assert ranges[0] is None and ranges[1].startswith("bytes=")
    assert len(PAYLOAD) // 4 <= int(ranges[1][6:-1]) <= len(PAYLOAD) // 2
    assert (tmp_path / "data" / "t" / "blob" / "blob.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(tmp_path, server, capsys):
    m = _manifest(tmp_path, server)
    server.state.ignore_range = True
    server.state.drop = 1
    fetch(m, root=tmp_path / "data", quiet=True)
    assert server.ranges("files/blob.bin")[1] is not None  # it asked to resume, got 200, restarted
    assert (tmp_path / "data" / "t" / "blob" / "blob.bin").read_bytes() == PAYLOAD
    assert "ignored the resume request" in capsys.readouterr().err


def test_stale_part_without_size_is_resumed(tmp_path, server):
    m = _manifest(tmp_path, server, size=None)
    part = tmp_path / "data" / "t" / "blob" / "blob.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:1000])
    fetch(m, root=tmp_path / "data", quiet=True)
    assert server.ranges("files/blob.bin") == ["bytes=1000-"]
    assert (tmp_path / "data" / "t" / "blob" / "blob.bin").read_bytes() == PAYLOAD


def test_corrupt_once_is_refetched(tmp_path, server, capsys):
    m = _manifest(tmp_path, server)
    server.state.corrupt = 1
    fetch(m, root=tmp_path / "data", quiet=True)
    assert len(server.ranges("files/blob.bin")) == 2
    assert (tmp_path / "data" / "t" / "blob" / "blob.bin").read_bytes() == PAYLOAD
    assert "checksum mismatch" in capsys.readouterr().err


def test_persistent_corruption_raises_clear_error(tmp_path, server):
    m = _manifest(tmp_path, server)
    server.state.corrupt = 100
    bad = sha256(bytes(b ^ 0xFF for b in PAYLOAD))
    with pytest.raises(ChecksumError) as ei:
        fetch(m, root=tmp_path / "data", quiet=True)
    msg = str(ei.value)
    assert "blob/blob.bin" in msg and sha256(PAYLOAD) in msg and bad in msg
    assert not (tmp_path / "data" / "t" / "blob" / "blob.bin").exists()
    assert not (tmp_path / "data" / "t" / "blob" / "blob.bin.part").exists()


def test_corrupt_local_file_is_replaced(tmp_path, server):
    m = _manifest(tmp_path, server)
    dest = tmp_path / "data" / "t" / "blob" / "blob.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(PAYLOAD[::-1])
    assert item_status(m, "blob/blob.bin", root=tmp_path / "data", deep=True).startswith("corrupt")
    fetch(m, root=tmp_path / "data", quiet=True)
    assert dest.read_bytes() == PAYLOAD


def test_md5_checksum(tmp_path, server):
    m = _manifest(tmp_path, server, sha256=None, md5=md5(PAYLOAD))
    fetch(m, root=tmp_path / "data", quiet=True)
    assert (tmp_path / "data" / "t" / "blob" / "blob.bin").read_bytes() == PAYLOAD
    m_bad = _manifest(tmp_path, server, sha256=None, md5=md5(b"other"))
    with pytest.raises(ChecksumError, match=md5(b"other")):
        fetch(m_bad, root=tmp_path / "other", quiet=True)


def test_404_is_a_download_error(tmp_path, server):
    m = _manifest(tmp_path, server, url="files/missing.bin")
    with pytest.raises(DownloadError, match="404"):
        fetch(m, root=tmp_path / "data", quiet=True)


def test_second_url_is_used_when_first_fails(tmp_path, server):
    m = _manifest(tmp_path, server, url=["files/missing.bin", "files/blob.bin"])
    fetch(m, root=tmp_path / "data", quiet=True)
    assert (tmp_path / "data" / "t" / "blob" / "blob.bin").read_bytes() == PAYLOAD


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nothing_listening_raises_download_error_naming_mirror(tmp_path):
    port = _closed_port()
    spec = {"path": "x.bin", "url": f"http://127.0.0.1:{port}/x.bin", "sha256": sha256(b"x")}
    m = load_manifest(write_manifest(tmp_path / "manifests", "t", [spec]))
    with pytest.raises(DownloadError) as ei:
        fetch(m, root=tmp_path / "data", quiet=True)
    msg = str(ei.value)
    assert "SIGE_DATA_MIRROR" in msg and f"127.0.0.1:{port}/x.bin" in msg and "x.bin" in msg
    assert "gave up after 3 tries" in msg


def test_unverified_item_warns(tmp_path, server, capsys):
    m = _manifest(tmp_path, server, sha256=None, size=None, checksum="none", checksum_note="upstream md5 is wrong")
    fetch(m, root=tmp_path / "data", quiet=True)
    err = capsys.readouterr().err
    assert "UNVERIFIED" in err and "upstream md5 is wrong" in err
    assert item_status(m, "blob/blob.bin", root=tmp_path / "data") == "unverified"


# ------------------------------------------------------------------------------------------- archives


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


ZIP_FILES = {"pack/original/000.png": b"o0", "pack/edited/000.png": b"e0", "pack/meta.csv": b"a,b\n"}
LAYOUT = {"original/": "originals", "edited/": "edits", "meta.csv": "index"}


def _zip_manifest(tmp_path: Path, server, data: bytes, **item: object):
    server.add("ds/pack.zip", data)
    spec = {
        "path": "pack.zip",
        "url": "ds/pack.zip",
        "md5": md5(data),
        "archive": "zip",
        "extract_to": "pack",
        "layout": LAYOUT,
    }
    spec.update(item)
    return load_manifest(write_manifest(tmp_path / "manifests", "z", [spec], base_url=server.url, root="."))


def test_zip_archive_is_verified_and_extracted(tmp_path, server):
    data = _zip(ZIP_FILES)
    m = _zip_manifest(tmp_path, server, data)
    root = tmp_path / "data"
    out = fetch(m, root=root, quiet=True)
    assert out == {"pack.zip": root / "pack"}
    assert (root / "pack" / "original" / "000.png").read_bytes() == b"o0"
    assert (root / "pack" / "meta.csv").read_bytes() == b"a,b\n"
    assert not (root / "pack.zip").exists()  # keep_archive defaults to false
    n = len(server.state.requests)
    assert data_path(m, "pack/edited/000.png", root=root) == root / "pack" / "edited" / "000.png"
    assert len(server.state.requests) == n  # present -> no request


def test_zip_without_top_folder_and_keep_archive(tmp_path, server):
    data = _zip({k.removeprefix("pack/"): v for k, v in ZIP_FILES.items()})
    m = _zip_manifest(tmp_path, server, data, keep_archive=True)
    root = tmp_path / "data"
    fetch(m, root=root, quiet=True)
    assert (root / "pack" / "edited" / "000.png").read_bytes() == b"e0"
    assert (root / "pack.zip").read_bytes() == data


def test_zip_missing_layout_is_rejected(tmp_path, server):
    data = _zip({"pack/original/000.png": b"o0"})
    m = _zip_manifest(tmp_path, server, data)
    with pytest.raises(DownloadError, match="layout"):
        fetch(m, root=tmp_path / "data", quiet=True)
    assert not (tmp_path / "data" / "pack").exists()


def test_zip_slip_is_rejected(tmp_path, server):
    data = _zip({"../evil.txt": b"x", "pack/meta.csv": b""})
    m = _zip_manifest(tmp_path, server, data)
    with pytest.raises(DownloadError, match="unsafe"):
        fetch(m, root=tmp_path / "data", quiet=True)
    assert not (tmp_path / "evil.txt").exists()


# -------------------------------------------------------------------------------------------- mirrors


def test_local_mirror_replaces_public_url(tmp_path, server, no_network, monkeypatch):
    m = _manifest(tmp_path, server)
    mirror = tmp_path / "mirror"
    (mirror / "t" / "blob").mkdir(parents=True)
    (mirror / "t" / "blob" / "blob.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv("SIGE_DATA_MIRROR", str(mirror))
    p = data_path(m, "blob/blob.bin", root=tmp_path / "data")
    assert p.read_bytes() == PAYLOAD and not p.is_symlink()
    assert server.state.requests == []


def test_corrupt_mirror_file_is_rejected(tmp_path, server, no_network):
    m = _manifest(tmp_path, server)
    mirror = tmp_path / "mirror"
    (mirror / "blob").mkdir(parents=True)
    (mirror / "blob" / "blob.bin").write_bytes(PAYLOAD[:-1] + b"X")  # mirror without the root folder
    with pytest.raises(ChecksumError, match=sha256(PAYLOAD)):
        fetch(m, root=tmp_path / "data", mirror=f"file://{mirror}", quiet=True)


def test_missing_in_mirror_names_mirror(tmp_path, server, no_network):
    m = _manifest(tmp_path, server)
    with pytest.raises(DownloadError, match="SIGE_DATA_MIRROR=") as ei:
        fetch(m, root=tmp_path / "data", mirror=tmp_path / "empty", quiet=True)
    assert "t/blob/blob.bin" in str(ei.value)


def test_http_mirror(tmp_path, server):
    m = _manifest(tmp_path, server, url="https://example.invalid/never.bin")
    server.add("mirror/t/blob/blob.bin", PAYLOAD)
    fetch(m, root=tmp_path / "data", mirror=server.url + "/mirror/", quiet=True)
    assert (tmp_path / "data" / "t" / "blob" / "blob.bin").read_bytes() == PAYLOAD
    assert [p for p, _ in server.state.requests] == ["/mirror/t/blob/blob.bin"]


def test_mirror_with_extracted_folder_skips_extraction(tmp_path, server, no_network):
    m = _zip_manifest(tmp_path, server, _zip(ZIP_FILES))
    mirror = tmp_path / "mirror"
    for name, data in ZIP_FILES.items():
        (mirror / name).parent.mkdir(parents=True, exist_ok=True)
        (mirror / name).write_bytes(data)
    root = tmp_path / "data"
    p = data_path(m, "pack/original/000.png", root=root, mirror=mirror, quiet=True)
    assert p.read_bytes() == b"o0"
    assert (root / "pack").resolve() == (mirror / "pack").resolve()


def test_mirror_with_archive_file(tmp_path, server, no_network):
    data = _zip(ZIP_FILES)
    m = _zip_manifest(tmp_path, server, data)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "pack.zip").write_bytes(data)
    out = fetch(m, root=tmp_path / "data", mirror=mirror, quiet=True)
    assert (out["pack.zip"] / "meta.csv").read_bytes() == b"a,b\n"
    assert (mirror / "pack.zip").exists()


# the mirror CI sets (captured before the fixtures clear it); the test needs a local folder
SHARED = Path(os.environ.get("SIGE_DATA_MIRROR") or "/nonexistent")


@pytest.mark.skipif(not (SHARED / "edits" / "engine" / "mask.npy").is_file(), reason="SIGE_DATA_MIRROR is not set")
def test_real_shared_mirror_serves_example_edits(tmp_path, no_network, monkeypatch):
    monkeypatch.setenv("SIGE_DATA_MIRROR", str(SHARED))
    p = data_path("example_edits", "engine/mask.npy")
    assert p == tmp_path / "data" / "edits" / "engine" / "mask.npy"
    assert p.read_bytes() == (SHARED / "edits" / "engine" / "mask.npy").read_bytes()
    shutil.rmtree(tmp_path / "data")
    out = fetch("example_edits", quiet=True)
    assert len(out) == 13 and all(p.is_file() for p in out.values())
