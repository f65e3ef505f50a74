"""The ``python -m sigebench.data`` command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from sigebench.data.__main__ import main

from ._helpers import sha256, write_manifest

REPO = Path(__file__).resolve().parents[2]


def test_list_fetch_verify(tmp_path, server, monkeypatch, capsys):
    server.add("x.bin", b"hello")
    write_manifest(tmp_path / "m", "cli", [{"path": "x.bin", "url": server.url + "/x.bin", "sha256": sha256(b"hello")}])
    monkeypatch.setenv("SIGE_MANIFESTS", str(tmp_path / "m"))
    assert main(["list"]) == 0
    assert "missing" in capsys.readouterr().out
    assert main(["verify", "cli"]) == 1
    capsys.readouterr()
    assert main(["fetch", "cli", "--item", "x.bin", "--root", "d", "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "d" / "cli" / "x.bin")
    assert main(["verify", "cli", "--root", "d"]) == 0
    assert main(["list", "cli", "--root", "d"]) == 0
    assert "present" in capsys.readouterr().out
    assert main(["path", "cli", "x.bin", "--root", "d"]) == 0


def test_download_error_is_one_line(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_manifest(tmp_path / "m", "off", [{"path": "x.bin", "url": f"http://127.0.0.1:{port}/x", "md5": "0" * 32}])
    monkeypatch.setenv("SIGE_MANIFESTS", str(tmp_path / "m"))
    assert main(["fetch", "off"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("error: could not fetch off:x.bin") and "SIGE_DATA_MIRROR" in lines[0]
    )


def test_module_entry_point_exits_nonzero_without_traceback(tmp_path):
    env = {**os.environ, "SIGE_MANIFESTS": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", "sigebench.data", "fetch", "nope"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert (
        r.stderr.strip()
        == f"error: no manifest 'nope': {tmp_path / 'nope.yaml'} does not exist (no manifests in {tmp_path})"
    )


def test_read_only_data_root_is_one_line(tmp_path, monkeypatch, capsys):
    """Root ignores file modes, so the refusal a read-only folder gives is simulated at mkdir."""
    root = tmp_path / "ro"

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    monkeypatch.setenv("SIGE_DATA_MIRROR", "")
    assert main(["path", "example_edits", "engine/mask.npy", "--root", str(root)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0] and str(root) in err[0] and "SIGE_DATA" in err[0]
