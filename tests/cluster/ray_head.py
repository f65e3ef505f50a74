"""A Ray head for tests: started on 127.0.0.1 only (Ray's local-only mode, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which
the drivers need too), with a token of these tests' own (never ~/.ray/auth_token), on free ports, in its own process
group, bounded in time, and stopped with every process it started."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
LOCAL_ONLY = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every Ray process binds and dials 127.0.0.1
    "RAY_AUTH_MODE": "token",  # heads and drivers authenticate with this token; nothing is written to ~/.ray
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
}
READY = "This command will now block forever"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def group_processes(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process in the process group ``pgid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[3]) == pgid:
            out.append((int(entry.name), cmdline))
    return out


@contextmanager
def ray_head(num_cpus: int = 2, timeout_s: float = 180.0) -> Iterator[tuple[str, int]]:
    """Start ``ray start --head --block`` on 127.0.0.1; yields (address, process group of every Ray process)."""
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    gcs, client, dash, agent, agent_grpc, env_agent, metrics, node, objects = free_ports(9)
    cmd = [
        str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        f"--num-cpus={num_cpus}", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
        "--object-store-memory=100000000", f"--temp-dir={temp}", f"--ray-client-server-port={client}",
        f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={env_agent}",
        f"--metrics-export-port={metrics}", f"--node-manager-port={node}", f"--object-manager-port={objects}",
    ]  # fmt: skip
    log = temp / "head.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **LOCAL_ONLY},
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + timeout_s
        while READY not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the Ray head did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{gcs}", proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.time() + 30
        while group_processes(proc.pid) and time.time() < deadline:
            time.sleep(0.5)
        try:  # whatever is left of the group (workers of killed drivers) is ours alone
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def local_only_env(address: str | None = None) -> dict[str, str]:
    """The environment of a driver of the head at ``address`` (RAY_ADDRESS: what `ray_local` joins)."""
    env = {**os.environ, **LOCAL_ONLY}
    if address:
        env["RAY_ADDRESS"] = address
    return env
