"""The writers' lock: an exclusive `flock` on the index folder's .lock file.

Example:
    >>> lock = WriterLock(Path("my-index"), timeout=60)  # doctest: +SKIP
    >>> lock.acquire()  # doctest: +SKIP
    >>> lock.release()  # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from stylefinder.errors import IndexStateError
from stylefinder.index.header import LOCK_FILE


class WriterLock:
    """The exclusive lock writers of the index at `directory` hold, waited for `timeout` s."""

    def __init__(self, directory: Path, timeout: float) -> None:
        self.directory, self.timeout = directory, timeout
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, waiting up to `timeout` seconds; `IndexStateError` when it stays held."""
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise IndexStateError(
                        f"another process is writing the index at {self.directory} "
                        f"(waited {self.timeout:.0f} s for its lock); try again when it finishes"
                    ) from None
                time.sleep(0.05)
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (nothing when it is not held)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
