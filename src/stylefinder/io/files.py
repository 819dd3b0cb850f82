"""Writing index files so that a reader sees the old file or the new one, never a part, and a
full disk raises `NoSpaceError` instead of leaving a torn file; reading them from several
threads at once (`load_npy`, `load_npz`).

Example:
    >>> atomic_write(Path("header.json"), b"{}")  # doctest: +SKIP
    >>> write_npy(Path("v.npy"), (10, 4), fill=lambda out: out.fill(0))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from stylefinder.errors import NoSpaceError
from stylefinder.io.diskspace import is_no_space, no_space, reserve

# numpy parses a .npy header with `ast.literal_eval`. On CPython 3.11 two threads building
# ASTs at once can fail with "SystemError: AST constructor recursion depth mismatch" (the depth
# counter is shared; a garbage collection inside one conversion lets the other thread run), so
# this package's threads read headers one at a time.
_HEADER_LOCK = threading.Lock()


def load_npy(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """`np.load` of a .npy file without pickles, memory-mapped with `mmap_mode`; safe to call
    from several threads at once (see `_HEADER_LOCK`).

    Example:
        >>> matrix = load_npy(Path("vectors-3.npy"), mmap_mode="r")  # doctest: +SKIP
    """
    with _HEADER_LOCK:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)


def load_npz(path: Path | io.BytesIO) -> dict[str, np.ndarray]:
    """Every array of a small .npz file (a path, or its bytes in a BytesIO), read at once and
    without pickles (as `load_npy`, thread-safe).

    Example:
        >>> load_npz(Path("stage-3-ab12.npz"))["info"]  # doctest: +SKIP
    """
    with _HEADER_LOCK, np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def write_npy(
    path: Path, shape: tuple[int, int], fill, *, dtype=np.float32, filled_rows: int | None = None
) -> None:
    """Write a .npy file of `shape` and `dtype` filled in place by `fill(array)`, atomically.

    The disk blocks of the first `filled_rows` rows (default: all) are reserved before `fill`
    writes them, so a full disk raises `NoSpaceError` (and the temporary file is removed)
    instead of killing the process with SIGBUS; later rows stay sparse.
    """
    prefix = "." + path.name.split("-")[0] + "-"
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    except OSError as exc:
        raise (no_space(path) if is_no_space(exc) else exc) from exc
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        rows = shape[0] if filled_rows is None else min(filled_rows, shape[0])
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
        reserve(Path(tmp), offset=0, nbytes=out.offset + rows * row_bytes)
        fill(out)
        out.flush()
        del out
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, NoSpaceError) and is_no_space(exc):
            raise no_space(path) from exc
        raise


def npz_bytes(**arrays) -> bytes:
    """The bytes of an .npz file holding `arrays` (arrays only: loaded without pickle).

    Example:
        >>> atomic_write(Path("basis.npz"), npz_bytes(mean=mean, basis=basis))  # doctest: +SKIP
    """
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old file or the new one, never a part.

    Example:
        >>> atomic_write(Path("header.json"), b"{}")  # doctest: +SKIP
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    except OSError as exc:
        raise (no_space(path, len(data)) if is_no_space(exc) else exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and is_no_space(exc):
            raise no_space(path, len(data)) from exc
        raise


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def npy_bytes(array: np.ndarray) -> bytes:
    """The bytes of a .npy file holding `array` (loaded without pickle).

    Example:
        >>> atomic_write(Path("labels.npy"), npy_bytes(np.arange(3)))  # doctest: +SKIP
    """
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()
