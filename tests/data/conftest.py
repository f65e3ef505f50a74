"""Fixtures for the data-layer tests: a local Range-capable HTTP server with fault switches."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import sigebench.data.download as download


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves; ``requests`` logs (path, Range header)."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop: int = 0  # drop the connection half-way through the next `drop` bodies
    corrupt: int = 0  # serve flipped bytes for the next `corrupt` bodies
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: ServerState

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence the default logger
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        st = self.server.state  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        with st.lock:
            st.requests.append((self.path, rng))
            body = st.files.get(self.path)
            corrupt = drop = False
            if body is not None and st.corrupt > 0:
                st.corrupt -= 1
                corrupt = True
            if body is not None and st.drop > 0:
                st.drop -= 1
                drop = True
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if corrupt:
            body = bytes(b ^ 0xFF for b in body)
        start = 0
        if rng and not st.ignore_range and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if drop:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)


@dataclass
class Server:
    state: ServerState
    url: str

    def add(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``/path``; return its URL."""
        self.state.files["/" + path.lstrip("/")] = data
        return f"{self.url}/{path.lstrip('/')}"

    def ranges(self, path: str) -> list[str | None]:
        """Range headers of the requests made for ``/path``, in order."""
        return [r for p, r in self.state.requests if p == "/" + path.lstrip("/")]


@pytest.fixture
def server() -> Iterator[Server]:
    """A threaded HTTP server on 127.0.0.1 (random port) with Range support and fault switches."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = ServerState()  # type: ignore[attr-defined]
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield Server(httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}")  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No mirror, data root and manifests from the environment; fast retries; short timeout."""
    for var in ("SIGE_DATA_MIRROR", "SIGE_DATA", "SIGE_MANIFESTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SIGE_DATA_TIMEOUT", "5")
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.01)
    monkeypatch.chdir(tmp_path)
    download._VERIFIED.clear()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test on any urllib request."""

    import requests

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"unexpected network access: {args[0] if args else kwargs}")

    monkeypatch.setattr(requests, "get", boom)
