"""The Streamlit web app and its launcher.

Example:
    >>> run_app("shop-index", port=8501)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stylefinder.index.store import IndexStore

APP_SCRIPT = Path(__file__).with_name("streamlit_app.py")


def app_command(
    index_dir: str | Path, *, port: int = 8501, host: str = "127.0.0.1", max_upload_mb: int = 10
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start the web app on `index_dir`."""
    IndexStore.open(index_dir)  # fail here, with a clear message, if there is no index
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true",
        "--server.maxUploadSize", str(max_upload_mb),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--theme.base", "light",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    env = dict(
        os.environ,
        STYLEFINDER_INDEX=str(Path(index_dir).resolve()),
        STYLEFINDER_MAX_UPLOAD_MB=str(max_upload_mb),
    )
    return command, env


def run_app(index_dir: str | Path, **options) -> int:
    """Start the web app and wait until it stops (Ctrl-C); returns its exit status."""
    command, env = app_command(index_dir, **options)
    port, host = options.get("port", 8501), options.get("host", "127.0.0.1")
    print(f"stylefinder web app: http://{host}:{port}  (Ctrl-C stops it)", flush=True)
    process = subprocess.Popen(command, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()
