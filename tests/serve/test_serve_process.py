"""`stylefinder serve` as a real process: SIGTERM stops it and its workers within seconds."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
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


def test_two_servers_on_one_database_see_each_others_writes(
    small_catalog, embedder, postgres_url, tmp_path, request
):
    import base64
    import hashlib
    import json

    pytest.importorskip("psycopg")
    from serve.conftest import ADMIN, png
    from stylefinder.jobs.build import build_index

    schema = "serve_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"
    build_index(small_catalog, url, embedder=embedder)
    env = {**os.environ, "STYLEFINDER_ADMIN_KEY": ADMIN}
    ports, servers, logs = [_free_port(), _free_port()], [], []
    try:
        for n, port in enumerate(ports):
            logs.append((tmp_path / f"serve-{n}.log").open("w"))
            command = [sys.executable, "-m", "stylefinder.cli", "serve", "--index", url]
            command += ["--port", str(port)]
            servers.append(
                subprocess.Popen(
                    command, stdout=logs[n], stderr=logs[n], env=env, start_new_session=True
                )
            )
        for n, port in enumerate(ports):
            ready = _poll(lambda p=port, s=servers[n]: _ready(p) or s.poll() is not None, 90)
            assert ready and servers[n].poll() is None, (tmp_path / f"serve-{n}.log").read_text()

        def call(port: int, method: str, path: str, body: bytes | None = None, **headers):
            url_ = f"http://127.0.0.1:{port}{path}"
            ask = urllib.request.Request(url_, data=body, method=method, headers=headers)
            try:
                with urllib.request.urlopen(ask, timeout=10) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as error:
                return error.code, error.read()

        admin = {"X-API-Key": ADMIN}
        item = json.dumps({"id": "new-1", "image_base64": base64.b64encode(png()).decode()})
        status, _ = call(ports[0], "POST", "/v1/items", item.encode(), **admin,
                         **{"Content-Type": "application/json"})  # fmt: skip
        assert status == 201
        written = time.monotonic()
        assert _poll(lambda: call(ports[1], "GET", "/v1/items/new-1")[0] == 200, 1.0)
        assert time.monotonic() - written < 1.0
        status, body = call(ports[1], "GET", "/v1/items/new-1/image")
        assert status == 200 and body == png()
        status, token = call(ports[1], "POST", "/v1/users/ann/token", **admin)
        assert status == 201
        user = {"X-User-Token": json.loads(token)["token"], "Content-Type": "application/json"}
        event = json.dumps({"item_id": "new-1", "kind": "like"}).encode()
        assert call(ports[0], "POST", "/v1/users/ann/events", event, **user)[0] == 201
        written = time.monotonic()

        def seen() -> bool:
            status, body = call(ports[1], "GET", "/v1/users/ann/export", **admin)
            return status == 200 and len(json.loads(body)["events"]) == 1

        assert _poll(seen, 1.0) and time.monotonic() - written < 1.0
    finally:
        for server in servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)
        for log in logs:
            log.close()
