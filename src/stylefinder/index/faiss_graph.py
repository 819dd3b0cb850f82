"""The faiss calls behind `HnswIndex`: filling a graph in steps, searching it with a bitmap of
allowed nodes, writing it atomically and reading it back (memory-mapped or into memory).

faiss numbers nodes 0..n-1 in the order they were added; what a node holds is the caller's
business (`HnswIndex` keeps a label per node).

Example:
    >>> write_graph(graph, folder / "ann-3-graph.faiss")  # doctest: +SKIP
    >>> again = read_graph(folder / "ann-3-graph.faiss", writable=False)  # doctest: +SKIP
    >>> nodes = search_graph(again, query, width=48, count=10)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from stylefinder.errors import IndexStateError
from stylefinder.io.diskspace import is_no_space, no_space
from stylefinder.io.files import fsync_dir

_ADD_ROWS = 16_384  # rows added to the graph per step (one progress update)
_FULL_DISK_BYTES = 64 << 20  # a failed write with less free space left: a full disk


def matrix_rows(vectors: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A reader of rows of `vectors` for `add_in_steps`: a run of rows is read as one slice.

    Example:
        >>> import numpy as np
        >>> matrix_rows(np.eye(3, dtype=np.float32))(np.array([1, 2])).tolist()
        [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """

    def read(part: np.ndarray) -> np.ndarray:
        if len(part) and part[-1] - part[0] == len(part) - 1:
            return np.asarray(vectors[part[0] : part[-1] + 1], np.float32)
        return np.asarray(vectors[part], np.float32)

    return read


def add_in_steps(
    graph, rows, read: Callable[[np.ndarray], np.ndarray], *, progress: bool = False
) -> None:
    """Add the vectors of `rows` (`read(rows)` gives them, float32) to `graph`, in steps, with
    a progress bar on a terminal when `progress`. faiss uses every CPU while adding, one thread
    afterwards (searches: one query per call, in the caller's thread).

    Example:
        >>> add_in_steps(graph, range(len(matrix)), matrix_rows(matrix))  # doctest: +SKIP
    """
    rows = np.asarray(rows, np.int64)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rows), desc="building the search graph", unit="row")
    faiss.omp_set_num_threads(
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    )
    try:
        for start in range(0, len(rows), _ADD_ROWS):
            part = rows[start : start + _ADD_ROWS]
            graph.add(np.ascontiguousarray(read(part)))
            if bar is not None:
                bar.update(len(part))
    finally:
        faiss.omp_set_num_threads(1)  # searches: one query per call, in the caller's thread
        if bar is not None:
            bar.close()


def search_graph(
    graph, query: np.ndarray, width: int, count: int, bitmap: np.ndarray | None = None
) -> np.ndarray:
    """The best `count` nodes (by the graph's int8 score, best first) that a search of `width`
    finds for `query` (D,), only nodes set in `bitmap` (faiss's little-endian bit order) when
    given; fewer when the graph does not find that many.

    Example:
        >>> search_graph(graph, matrix[0], width=48, count=10)  # doctest: +SKIP
        array([   0,  517, ...])
    """
    params = faiss.SearchParametersHNSW(efSearch=width)
    if bitmap is not None:  # the selector points into `bitmap`: kept alive while searching
        params.sel = faiss.IDSelectorBitmap(graph.ntotal, faiss.swig_ptr(bitmap))
    count = min(max(1, count), max(1, graph.ntotal))
    _, found = graph.search(np.ascontiguousarray(query[None]), count, params=params)
    return found[0][found[0] >= 0]


def read_graph(path: Path, *, writable: bool):
    """The graph saved at `path`: its codes memory-mapped read-only, or read into memory with
    `writable` (to add to). `FileNotFoundError` when it is missing, `IndexStateError` when
    faiss cannot read it.

    Example:
        >>> read_graph(folder / "ann-3-graph.faiss", writable=False).ntotal  # doctest: +SKIP
        20000
    """
    flags = 0 if writable else faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        if not path.is_file():
            raise FileNotFoundError(path) from exc
        raise IndexStateError(f"{path} is damaged ({str(exc).splitlines()[0]})") from exc


def write_graph(graph, path: Path) -> None:
    """Write `graph` to `path` atomically (a temporary file, fsync, rename); a full disk raises
    `NoSpaceError`.

    Example:
        >>> write_graph(graph, folder / "ann-3-graph.faiss")  # doctest: +SKIP
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    except OSError as exc:
        raise (no_space(path) if is_no_space(exc) else exc) from exc
    os.close(fd)
    try:
        faiss.write_index(graph, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except RuntimeError as exc:  # faiss reports a failed write as RuntimeError
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if shutil.disk_usage(path.parent).free < _FULL_DISK_BYTES:
            raise no_space(path) from exc
        raise IndexStateError(f"cannot write {path}: {str(exc).splitlines()[0]}") from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
