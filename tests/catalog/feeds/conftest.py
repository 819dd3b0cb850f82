"""Fixtures of the feed tests: a loopback feed server, download options sized for tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from feedserver import FeedServer

from stylefinder.catalog.demo import DemoCatalog
from stylefinder.catalog.feeds.download import DownloadOptions


@pytest.fixture
def feed_server(demo: DemoCatalog) -> Iterator[FeedServer]:
    """A fresh loopback server for one test (stopped at its end)."""
    server = FeedServer(demo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def fast_options() -> DownloadOptions:
    """Short timeouts and backoffs, small limits: faults show in well under a second."""
    return DownloadOptions(
        workers=8,
        per_host=4,
        connect_timeout=1.0,
        read_timeout=0.5,
        deadline=5.0,
        retries=2,
        backoff_factor=0.05,
        max_retry_after=1.0,
        max_redirects=3,
        max_bytes=200_000,
        max_pixels=4_000_000,
    )
