"""The HTTP API (FastAPI) and its launcher.

Example:
    >>> serve("shop-index", port=8000, workers=2)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from stylefinder.index.pg_connect import is_database_url
from stylefinder.index.stores import open_store

#: Seconds a stopping server (SIGTERM, Ctrl-C) waits for requests in flight before ending them.
SHUTDOWN_GRACE_S = 3.0


def serve(
    index_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    admin_key_file: str | None = None,
    read_key_file: str | None = None,
    max_upload_mb: float = 10,
    request_timeout: float = 30,
    shutdown_grace: float = SHUTDOWN_GRACE_S,
    feed: str | None = None,
    feed_format: str = "auto",
) -> None:
    """Run the API under uvicorn until stopped. Settings travel to the workers as environment.

    SIGTERM or Ctrl-C stops the server and its workers: requests in flight get `shutdown_grace`
    seconds to finish (a stalled upload would otherwise hold every worker until the request
    timeout), then the process exits. `feed` (a product feed's path or http(s) URL) is what
    `POST /v1/feeds/sync` re-syncs.
    """
    import uvicorn

    open_store(index_dir)  # a clear error now rather than in every worker
    in_database = is_database_url(str(index_dir))
    os.environ["STYLEFINDER_INDEX"] = str(index_dir if in_database else Path(index_dir).resolve())
    os.environ["STYLEFINDER_MAX_UPLOAD_MB"] = str(max_upload_mb)
    os.environ["STYLEFINDER_REQUEST_TIMEOUT"] = str(request_timeout)
    if feed:
        is_url = feed.startswith(("http://", "https://"))
        os.environ["STYLEFINDER_FEED"] = feed if is_url else str(Path(feed).resolve())
        os.environ["STYLEFINDER_FEED_FORMAT"] = feed_format
    if admin_key_file:
        os.environ["STYLEFINDER_ADMIN_KEY_FILE"] = str(Path(admin_key_file).resolve())
    if read_key_file:
        os.environ["STYLEFINDER_READ_KEY_FILE"] = str(Path(read_key_file).resolve())
    from stylefinder.serve.settings import ServerSettings

    ServerSettings.from_env()  # fail early on a missing or empty key file
    uvicorn.run(
        "stylefinder.serve.api:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=shutdown_grace,
        log_level="warning",
    )
