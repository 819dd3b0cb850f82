"""Disk space for index files: reserve blocks before writing through a memory map.

A write through a memory map into a sparse file that the disk cannot back kills the process
with SIGBUS ("Bus error"), before any cleanup can run. Reserving the blocks first with
`posix_fallocate` turns a full disk into an ordinary `NoSpaceError` that names the device and
the space needed, while the writer can still remove its temporary file.

Example:
    >>> reserve(Path("vectors.tmp"), offset=128, nbytes=5120)  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from stylefinder.errors import NoSpaceError

_MB = 1024 * 1024


def reserve(path: Path, *, offset: int, nbytes: int) -> None:
    """Allocate `nbytes` of disk for `path` from `offset` (the file grows if needed), or raise
    `NoSpaceError`. File systems without fallocate are left to the write itself.

    Example:
        >>> reserve(Path("matrix.npy"), offset=0, nbytes=1 << 20)  # doctest: +SKIP
    """
    if nbytes <= 0:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, offset, nbytes)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise no_space(path, nbytes) from exc
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def no_space(path: Path, needed: int | None = None) -> NoSpaceError:
    """The `NoSpaceError` for a write of `needed` bytes to `path` that found the disk full.

    Example:
        >>> str(no_space(Path("/tmp/x.npy"), 3 << 20)).startswith("no space left on")
        True
    """
    folder = path.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    need = f": needs {_megabytes(needed)} MB, {_megabytes(free)} MB free" if needed else ""
    return NoSpaceError(
        errno.ENOSPC,
        f"no space left on {device_of(folder)} (mounted at {mount_point(folder)}){need}. "
        f"Free some space or move the index to a larger disk; {folder} still holds the last "
        "committed index, unchanged",
    )


def is_no_space(exc: BaseException) -> bool:
    """True for the errors a full disk raises (ENOSPC, EDQUOT, SQLite's "disk is full").

    Example:
        >>> is_no_space(OSError(28, "No space left on device"))
        True
    """
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "disk is full" in str(exc) or "database or disk is full" in str(exc)


def mount_point(path: Path) -> Path:
    """The mount point of the file system holding `path`."""
    path = path.resolve()
    device = path.stat().st_dev
    while path.parent != path and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def device_of(path: Path) -> str:
    """The device (as /proc/mounts names it) holding `path`, or its mount point."""
    try:
        where = mount_point(path)
    except OSError:
        return str(path)
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return str(where)
    for line in reversed(lines):  # the last mount on a point is the one in use
        fields = line.split()
        if len(fields) >= 2 and fields[1] == str(where):
            return fields[0]
    return str(where)


def _megabytes(count: int) -> str:
    return f"{count / _MB:.1f}" if count < 10 * _MB else f"{count / _MB:.0f}"
