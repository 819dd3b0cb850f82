"""`stylefinder serve` as a real process: SIGTERM stops it and its workers within seconds."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _group(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    members.append(int(entry.name))
    return members


def _poll(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def test_sigterm_stops_the_server_and_its_workers(small_catalog, embedder, tmp_path):
    from stylefinder.jobs.build import build_index

    index = tmp_path / "index"
    build_index(small_catalog, index, embedder=embedder)
    port = _free_port()
    command = [sys.executable, "-m", "stylefinder.cli", "serve", "--index", str(index)]
    command += ["--port", str(port), "--workers", "2"]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    try:
        assert _poll(lambda: _ready(port) or server.poll() is not None, 60), "never ready"
        assert server.poll() is None, (tmp_path / "serve.log").read_text()
        assert len(_group(server.pid)) >= 3  # the supervisor and two workers
        # a client that never finishes its upload: it must not hold the shutdown
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(
            b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"image'
        )
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert _poll(lambda: server.poll() is not None, 10), "still running 10 s after SIGTERM"
        assert _poll(lambda: not _group(server.pid), 5), f"left behind: {_group(server.pid)}"
        assert time.monotonic() - started < 10
        assert server.returncode in (0, -signal.SIGTERM)
        stalled.close()
        with pytest.raises(ConnectionRefusedError):  # nothing listens on the port any more
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        with socket.socket() as probe:  # and a new server may take it
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(5)
        log.close()
