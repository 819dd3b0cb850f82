"""The Streamlit web app and its launcher.

`run_app` starts the Streamlit server in a process group of its own and stops that whole group
when it gets SIGINT (Ctrl-C), SIGTERM or SIGHUP, so no server is left behind on its port.

Example:
    >>> run_app("shop-index", port=8501)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from stylefinder.index.pg_connect import is_database_url
from stylefinder.index.stores import open_store

APP_SCRIPT = Path(__file__).with_name("streamlit_app.py")
#: Streamlit passes the app uploads up to this many times its limit, so that one over the limit
#: gets the app's message naming the limit; above that, Streamlit's browser code refuses it.
UPLOAD_CEILING_FACTOR = 4
#: Seconds the server gets to stop after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 10.0
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def upload_ceiling_mb(max_upload_mb: float) -> int:
    """The size (MB) up to which Streamlit hands uploads to the app, for an app limit of
    `max_upload_mb`.

    Example:
        >>> upload_ceiling_mb(10), upload_ceiling_mb(0.001)
        (40, 1)
    """
    return max(1, math.ceil(max_upload_mb * UPLOAD_CEILING_FACTOR))


def app_command(
    index: str | Path, *, port: int = 8501, host: str = "127.0.0.1", max_upload_mb: int = 10
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start the web app on `index` (a directory or a
    PostgreSQL URL)."""
    open_store(index).close()  # fail here, with a clear message, if there is no index
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true",
        "--server.maxUploadSize", str(upload_ceiling_mb(max_upload_mb)),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--theme.base", "light",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    env = dict(
        os.environ,
        STYLEFINDER_INDEX=str(index) if is_database_url(str(index)) else str(Path(index).resolve()),
        STYLEFINDER_MAX_UPLOAD_MB=str(max_upload_mb),
    )
    return command, env


def run_app(index: str | Path, **options) -> int:
    """Start the web app and wait until it stops; returns its exit status, 0 when stopped by
    SIGINT (Ctrl-C), SIGTERM or SIGHUP (which stop the server's whole process group)."""
    command, env = app_command(index, **options)
    port, host = options.get("port", 8501), options.get("host", "127.0.0.1")
    print(f"stylefinder web app: http://{host}:{port}  (Ctrl-C stops it)", flush=True)
    return supervise(command, env)


class _StopRequestedError(Exception):
    """A stop signal arrived."""


def supervise(
    command: Sequence[str], env: dict[str, str], *, grace: float = STOP_GRACE_SECONDS
) -> int:
    """Run `command` in a new process group and wait for it; on SIGINT, SIGTERM or SIGHUP,
    stop the group (SIGTERM, then SIGKILL after `grace` seconds or on a second signal) and
    return 0. Otherwise returns the command's exit status, after killing anything it left in
    its group.

    Example:
        >>> supervise(["sleep", "0"], dict(os.environ))
        0
    """
    if threading.current_thread() is not threading.main_thread():  # no signal handlers here
        return _run(command, env, grace)
    process: subprocess.Popen | None = None
    requested: list[int] = []

    def on_signal(signum: int, frame) -> None:
        requested.append(signum)
        if process is not None and len(requested) == 1:  # once: never inside the clean-up
            raise _StopRequestedError

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        process = subprocess.Popen(command, env=env, start_new_session=True)
        if requested:  # a signal came while the server was starting
            raise _StopRequestedError
        return process.wait()
    except _StopRequestedError:
        return 0
    finally:
        if process is not None:
            for sig in STOP_SIGNALS:  # a second signal: no more waiting
                signal.signal(sig, lambda *_: _signal_group(process, signal.SIGKILL))
            _stop(process, grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(command: Sequence[str], env: dict[str, str], grace: float) -> int:
    """`supervise` where signals cannot be handled (outside the main thread)."""
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        return process.wait()
    finally:
        _stop(process, grace)


def _stop(process: subprocess.Popen, grace: float) -> None:
    """Stop the process group led by `process`: SIGTERM, then SIGKILL after `grace` seconds;
    then kill whatever is left in the group."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    _signal_group(process, signal.SIGKILL)  # helpers the server may have left behind


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(process.pid, signum)
