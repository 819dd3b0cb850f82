"""The vector matrix files of an index: vectors-<gen>.npy, float32 (N, dim), memory-mapped.

A new matrix file has spare rows after its last one (unwritten, they take no disk space), so
that later commits can append in place; rows past the committed count belong to no generation
until a commit names them. Data files no committed state names are cleaned after each commit.

Example:
    >>> vectors = load_vectors(Path("my-index"), "vectors-3.npy", 1000, 1280)  # doctest: +SKIP
    >>> vectors.shape  # doctest: +SKIP
    (1000, 1280)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from stylefinder.errors import IndexStateError
from stylefinder.io.diskspace import reserve
from stylefinder.io.files import load_npy, write_npy

MIN_SPARE_ROWS = 1024  # a new matrix file has room for this many more rows (or a quarter more)
_COPY_ROWS = 65_536  # rows copied per step when writing a new matrix
_DATA_PREFIXES = ("vectors-", "ann-", "coarse-")  # coarse-: two-stage files of older versions
_DATA_SUFFIXES = (".npy", ".npz", ".faiss")


def load_vectors(directory: Path, name: str, count: int, dim: int) -> np.ndarray:
    """The first `count` rows of matrix file `name`, memory-mapped read-only; `IndexStateError`
    when it is damaged, `FileNotFoundError` when it is gone (a writer replaced it).

    Example:
        >>> load_vectors(Path("my-index"), "", 0, 1280).shape
        (0, 1280)
    """
    if count == 0:
        return np.zeros((0, dim), np.float32)
    if not name:
        raise IndexStateError(f"{directory} is damaged: items without a vector file")
    try:
        vectors = load_npy(directory / name, mmap_mode="r")
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise IndexStateError(f"{directory / name} is damaged ({exc})") from exc
    if vectors.ndim == 2 and vectors.shape[0] >= count:  # rows past `count`: spare room
        vectors = vectors[:count]
    if vectors.shape != (count, dim) or vectors.dtype != np.float32:
        raise IndexStateError(
            f"{directory / name} is damaged: shape {vectors.shape} {vectors.dtype}, "
            f"expected ({count}, {dim}) float32"
        )
    return vectors


def write_matrix(
    path: Path, old: np.ndarray, kept_rows: list[int] | range, added: list[np.ndarray]
) -> None:
    """Write a new matrix file at `path`: the rows `kept_rows` of `old`, then the `added`
    vectors, then spare rows (nothing is written when there is no row).

    Example:
        >>> write_matrix(folder / "vectors-4.npy", base.vectors, range(10), [v])  # doctest: +SKIP
    """
    total = len(kept_rows) + len(added)
    if total == 0:
        return

    def fill(out: np.ndarray) -> None:
        kept = np.asarray(kept_rows, dtype=np.int64)
        for start in range(0, len(kept), _COPY_ROWS):
            part = kept[start : start + _COPY_ROWS]
            if len(part) and part[-1] - part[0] == len(part) - 1:  # a run: one slice
                out[start : start + len(part)] = old[part[0] : part[-1] + 1]
            else:
                out[start : start + len(part)] = old[part]
        for offset, vector in enumerate(added, start=len(kept)):
            out[offset] = vector

    spare = max(MIN_SPARE_ROWS, total // 4)  # unwritten: takes no disk space until used
    write_npy(path, (total + spare, old.shape[1]), fill, filled_rows=total)


def append_in_place(
    directory: Path, name: str, rows: int, vectors: list[np.ndarray], *, restore_rows: int = 0
) -> bool:
    """Write `vectors` into the spare rows after the first `rows` rows of matrix file `name`;
    False when there is no such file or too little room, or when the restore point
    reads more than `rows` rows of it. Readers of earlier generations read only the rows
    before, and until the commit the new rows are not part of any.

    Example:
        >>> append_in_place(folder, "vectors-3.npy", 1000, [vector])  # doctest: +SKIP
        True
    """
    if not name or not rows:
        return False
    if not vectors:  # only rows emptied: the matrix stays as it is
        return True
    path = directory / name
    try:
        matrix = load_npy(path, mmap_mode="r+")
    except (OSError, ValueError):
        return False
    if matrix.ndim != 2 or matrix.shape[0] < rows + len(vectors):
        return False
    if restore_rows > rows:  # those spare rows belong to the restore point
        return False
    row_bytes = matrix.shape[1] * matrix.itemsize
    reserve(path, offset=matrix.offset + rows * row_bytes, nbytes=len(vectors) * row_bytes)
    matrix[rows : rows + len(vectors)] = np.asarray(vectors, np.float32)
    matrix.flush()
    del matrix
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return True


def clean_data_files(directory: Path, keep: set[str]) -> None:
    """Delete the data files (matrices, vector index files) of `directory` not in `keep`, and
    temporary files that writers left."""
    for path in directory.iterdir():
        stale_data = path.name.startswith(_DATA_PREFIXES) and path.suffix in _DATA_SUFFIXES
        stale_tmp = path.name.startswith(tuple(f".{p}" for p in _DATA_PREFIXES))
        stale_tmp = stale_tmp and path.suffix == ".tmp"
        if (stale_data and path.name not in keep) or stale_tmp:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
