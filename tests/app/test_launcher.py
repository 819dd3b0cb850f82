"""`stylefinder app` as a real process: a stop signal stops the Streamlit server with it, and
the server lets uploads over the app's limit through to the app's message."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")

from stylefinder.app import app_command, supervise, upload_ceiling_mb
from stylefinder.app.browser import answers, free_port, wait_until_ready


def test_server_passes_uploads_over_the_limit_to_the_app(app_index):
    command, env = app_command(app_index, port=8765, max_upload_mb=10)
    server_cap = int(command[command.index("--server.maxUploadSize") + 1])
    assert server_cap == upload_ceiling_mb(10) > 10
    assert env["STYLEFINDER_MAX_UPLOAD_MB"] == "10"  # the limit the app's message names


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent counts as stopped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_the_server_too(app_index, signum):
    port = free_port()
    command = [sys.executable, "-m", "stylefinder.cli", "app", "--index", str(app_index)]
    parent = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    servers: list[int] = []
    try:
        wait_until_ready(parent, f"http://127.0.0.1:{port}", timeout=120)
        servers = children(parent.pid)
        assert len(servers) == 1  # the Streamlit server
        parent.send_signal(signum)
        status = parent.wait(timeout=15)
        assert wait_for(lambda: not alive(servers[0]), timeout=10), "the server outlived the app"
        assert status == 0  # a requested stop
        assert not answers(f"http://127.0.0.1:{port}/_stcore/health")
        assert wait_for(lambda: port_is_free(port), timeout=5)
    finally:
        for pid in [parent.pid, *servers]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait(timeout=10)


def test_supervise_stops_what_the_command_left_in_its_group(tmp_path):
    """A command that exits leaving a helper in its process group: the helper is stopped too."""
    pid_file = tmp_path / "helper.pid"
    script = (
        "import subprocess, sys; p = subprocess.Popen(['sleep', '60']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))"
    )
    assert supervise([sys.executable, "-c", script], dict(os.environ)) == 0
    helper = int(pid_file.read_text())
    assert wait_for(lambda: not alive(helper), timeout=5)
