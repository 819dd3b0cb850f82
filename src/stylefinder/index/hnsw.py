"""A `VectorIndex` on faiss: an HNSW graph over int8 codes of the rows, rescored exactly.

The graph (faiss `IndexHNSWSQ`, one byte per dimension: 1.3 GB for 1M x 1280 instead of 5.1)
finds `search_width` candidates, which are scored against the full rows, so scores stay exact.
The search width is chosen when the graph is built: rows sampled as queries are searched
exactly and through the graph, and the smallest width whose mean recall@10 reaches the target
is kept (see `calibrate`). Filters go into the graph search as a bitmap of allowed nodes
(faiss `IDSelectorBitmap`), with a width scaled up for the share of rows they pass; filters
passing few rows are scored exactly instead.

faiss numbers nodes 0..n-1 in the order they were added; `labels[node]` is the row a node holds
(-1: removed, a tombstone). Rows the graph does not hold yet (added since it was saved) are
scored exactly until the writer grows the graph. Readers memory-map the saved codes.

Example:
    >>> index = HnswIndex.build(matrix, AnnSettings(kind="hnsw"))  # doctest: +SKIP
    >>> index.params["search_width"], index.params["recall_at_10"]  # doctest: +SKIP
    (48, 0.987)
    >>> rows, scores = index.search(matrix[:1], 10)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy as _copy
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from stylefinder.errors import IndexStateError
from stylefinder.index.vector_index import DEFAULT_ANN, AnnSettings, VectorIndex
from stylefinder.io.diskspace import is_no_space, no_space
from stylefinder.io.files import atomic_write, fsync_dir, load_npy, npy_bytes

_ADD_ROWS = 16_384  # rows added to the graph per step (one progress update)
_TRAIN_ROWS = 65_536  # rows the int8 ranges are fitted on
_BLOCK_ROWS = 65_536  # rows scored per step while measuring recall
_FULL_DISK_BYTES = 64 << 20  # a failed write with less free space left: a full disk
_MAX_WIDTH = 4096  # the widest graph search; filters it cannot serve are scored exactly
_POOLS = (10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256)  # candidates rescored
_FILTER_EXPONENTS = (0.25, 0.5, 0.75, 1.0)  # filtered width: search_width / share ** e
_K = 10  # the search width is calibrated for k = 10; larger k widen it


class HnswIndex(VectorIndex):
    """faiss HNSW over int8 codes; candidates rescored against the full rows."""

    kind = "hnsw"

    def __init__(
        self,
        vectors: np.ndarray,
        graph: faiss.IndexHNSWSQ,
        labels: np.ndarray,
        params: dict[str, Any],
        *,
        writable: bool,
        removed: np.ndarray | None = None,
    ) -> None:
        super().__init__(vectors)
        self._graph = graph
        self._labels = np.asarray(labels, np.int64)
        self._params = dict(params)
        self._writable = writable
        self._graph_changed = self._labels_changed = False
        # rows removed that no node holds any more: never scored as rows the graph lacks
        self._removed = np.zeros(0, np.int64) if removed is None else np.unique(removed)
        self._uncovered = self._find_uncovered(len(vectors))
        self.source: str | None = None  # the graph file this index was loaded from or saved to
        self._changed()

    def reader_copy(self) -> HnswIndex:
        """A copy sharing this index's read-only graph, with labels of its own to change (a
        writer's next generation, made without reading the graph file again, nor deriving
        again what this one knows)."""
        copy = _copy.copy(self)
        copy._labels, copy._removed = self._labels.copy(), self._removed.copy()
        copy._uncovered, copy._params, copy._added = (
            self._uncovered.copy(),
            dict(self._params),
            dict(self._added),
        )
        return copy

    # -- building --------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        settings: AnnSettings = DEFAULT_ANN,
        *,
        progress: bool = False,
    ) -> HnswIndex:
        """A graph over every row of `vectors`, its search width calibrated (see `calibrate`).

        Example:
            >>> index = HnswIndex.build(matrix, AnnSettings(kind="hnsw"))  # doctest: +SKIP
        """
        started = time.perf_counter()
        n, dim = vectors.shape
        graph = faiss.IndexHNSWSQ(
            dim, faiss.ScalarQuantizer.QT_8bit, settings.degree, faiss.METRIC_INNER_PRODUCT
        )
        graph.hnsw.efConstruction = settings.build_width
        rng = np.random.default_rng(settings.seed)
        sample = np.sort(rng.choice(n, size=min(n, _TRAIN_ROWS), replace=False))
        graph.train(np.ascontiguousarray(vectors[sample], np.float32))
        _add_in_steps(graph, vectors, range(n), progress=progress)
        params = {
            "kind": cls.kind,
            "library": f"faiss {faiss.__version__}",
            "codes": "int8",
            "degree": settings.degree,
            "build_width": settings.build_width,
            "search_width": settings.search_widths[-1],
            "target_recall": settings.target_recall,
            "exact_filter_rows": settings.exact_filter_rows,
            "exact_filter_share": settings.exact_filter_share,
        }
        index = cls(vectors, graph, np.arange(n, dtype=np.int64), params, writable=True)
        index._graph_changed = index._labels_changed = True
        if n > _K:
            width, pool, recall, queries = calibrate(index, vectors, settings)
            index._params.update(
                search_width=width, rescore=pool, recall_at_10=recall, queries=queries
            )
            filtered = calibrate_filter(index, vectors, settings)
            if filtered is not None:
                index._params.update(filter_exponent=filtered[0], filtered_recall_at_10=filtered[1])
        index._params["build_seconds"] = round(time.perf_counter() - started, 1)
        return index

    # -- the interface ---------------------------------------------------------------------------

    @property
    def params(self) -> dict[str, Any]:
        return {
            **self._params,
            "nodes": len(self._labels),
            "tombstones": self._tombstones,
            "uncovered": len(self._uncovered),
        }

    @property
    def writable(self) -> bool:
        """Whether the graph was read into memory (a writer's, to grow) rather than mapped."""
        return self._writable

    @property
    def tombstone_share(self) -> float:
        """Removed rows still in the graph, as a share of its nodes."""
        return self._tombstones / max(1, len(self._labels))

    @property
    def uncovered(self) -> int:
        """Live rows the graph does not hold (scored exactly)."""
        return len(self._uncovered)

    def __len__(self) -> int:
        return len(self._labels) - self._tombstones + len(self._uncovered)

    def live_rows(self) -> np.ndarray:
        return np.sort(np.concatenate([self._labels[self._labels >= 0], self._uncovered]))

    def _add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        known = np.zeros(self.size, bool)
        known[self._labels[self._labels >= 0]] = True
        known[self._uncovered] = True
        if known[rows].any():
            raise ValueError(f"rows {rows[known[rows]][:5].tolist()} are already in the index")
        if not self._writable:  # a reader's index: the new rows are scored exactly
            self._uncovered = np.sort(np.concatenate([self._uncovered, rows]))
            return
        self._graph.add(np.ascontiguousarray(vectors, np.float32))
        self._labels = np.concatenate([self._labels, rows])
        self._graph_changed = self._labels_changed = True
        self._changed()

    def grow(self, *, progress: bool = False) -> int:
        """Add the rows the graph does not hold yet (see `uncovered`); returns how many."""
        rows = self._uncovered
        if not len(rows):
            return 0
        self._make_writable()
        _add_in_steps(self._graph, self, rows, progress=progress)
        self._labels = np.concatenate([self._labels, rows])
        self._uncovered = np.zeros(0, np.int64)
        self._graph_changed = self._labels_changed = True
        self._changed()
        return len(rows)

    def remove(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.int64).reshape(-1)
        if not len(rows):
            return
        removed = np.isin(self._labels, rows)
        gone = np.concatenate(
            [self._labels[removed], self._uncovered[np.isin(self._uncovered, rows)]]
        )
        if len(gone):
            self._labels = np.where(removed, -1, self._labels)
            self._removed = np.union1d(self._removed, gone)
            self._labels_changed = True
        self._uncovered = self._uncovered[~np.isin(self._uncovered, rows)]
        self._changed()

    def renumber(self, new_rows: np.ndarray, vectors: np.ndarray) -> None:
        new_rows = np.asarray(new_rows, np.int64)
        known = self._labels >= 0
        labels = np.full(len(self._labels), -1, np.int64)
        inside = known & (self._labels < len(new_rows))
        labels[inside] = new_rows[self._labels[inside]]
        self._labels = labels
        removed = self._removed[self._removed < len(new_rows)]
        self._removed = np.unique(new_rows[removed][new_rows[removed] >= 0])
        self._labels_changed = True
        self._vectors, self._added = vectors, {}
        self._uncovered = self._find_uncovered(len(vectors))
        self._changed()

    def bind(self, vectors: np.ndarray) -> None:
        super().bind(vectors)
        self._uncovered = self._find_uncovered(len(vectors))
        self._changed()

    def _find_uncovered(self, rows: int) -> np.ndarray:
        """Rows below `rows` that no node holds (the live rows the graph lacks)."""
        held = np.zeros(max(rows, 1 + int(self._labels.max(initial=-1))), bool)
        held[self._labels[self._labels >= 0]] = True
        held[self._removed[self._removed < len(held)]] = True
        return np.flatnonzero(~held[:rows]).astype(np.int64)

    def _candidates(self, query, k, allowed):
        live = len(self)
        passing = live if allowed is None else int(np.count_nonzero(allowed))
        if allowed is not None and passing <= max(k, self._exact_filter_limit(live)):
            return None  # few rows pass: score them exactly
        base = int(self._params["search_width"])
        width = max(base, math.ceil(base * k / _K))
        pool = int(self._params.get("rescore", base))
        count = max(pool, math.ceil(pool * k / _K), k)  # candidates rescored exactly
        if allowed is not None:
            width = self._filtered_width(width, passing / max(1, live))
        bitmap = self._node_bitmap(allowed)
        uncovered = self._uncovered
        if allowed is not None and len(uncovered):
            uncovered = uncovered[allowed[uncovered]]
        while True:
            rows = self._graph_rows(query, width, bitmap, min(count, width))
            if len(rows) + len(uncovered) >= min(k, passing) or allowed is None:
                return np.concatenate([rows, uncovered])
            if width >= _MAX_WIDTH:  # the graph cannot reach k of the rows that pass
                return None
            width = min(width * 4, _MAX_WIDTH)

    def _graph_rows(
        self, query: np.ndarray, width: int, bitmap: np.ndarray | None, count: int
    ) -> np.ndarray:
        """The rows of the best `count` nodes (by int8 score) that a graph search of `width`
        finds (only nodes in `bitmap` when given), best first."""
        params = faiss.SearchParametersHNSW(efSearch=width)
        if bitmap is not None:  # the selector points into `bitmap`: kept alive while searching
            params.sel = faiss.IDSelectorBitmap(len(self._labels), faiss.swig_ptr(bitmap))
        count = min(max(1, count), max(1, len(self._labels)))
        _, found = self._graph.search(np.ascontiguousarray(query[None]), count, params=params)
        rows = self._labels[found[0][found[0] >= 0]]
        return rows[rows >= 0]

    def _filtered_width(self, width: int, share: float) -> int:
        """The search width for a filter passing `share` of the rows: `width` / share ** e, the
        exponent e calibrated at build time (1 without calibration: a graph search then finds
        as many allowed nodes as an unfiltered search finds nodes)."""
        exponent = float(self._params.get("filter_exponent", 1.0))
        return min(max(width, math.ceil(width / share**exponent)), _MAX_WIDTH)

    def _node_bitmap(self, allowed: np.ndarray | None) -> np.ndarray | None:
        """faiss's bitmap of the nodes to return: live ones holding an allowed row (None:
        every node, no tombstones and no filter)."""
        if allowed is None:
            if self._tombstone_bitmap is None and self._tombstones:
                self._tombstone_bitmap = np.packbits(self._labels >= 0, bitorder="little")
            return self._tombstone_bitmap
        if self._identity:  # node i holds row i
            nodes = allowed[: len(self._labels)]
        else:
            nodes = self._labels >= 0
            nodes[nodes] = allowed[self._labels[nodes]]
        return np.packbits(nodes, bitorder="little")

    def _changed(self) -> None:
        super()._changed()
        self._tombstone_bitmap = None
        self._tombstones = int(np.count_nonzero(self._labels < 0))
        n = len(self._labels)
        self._identity = bool(n and self._labels[0] == 0 and self._labels[-1] == n - 1) and bool(
            np.array_equal(self._labels, np.arange(n))
        )

    def _exact_filter_limit(self, live: int) -> int:
        rows = int(self._params.get("exact_filter_rows", 0))
        share = float(self._params.get("exact_filter_share", 0.0))
        return max(rows, int(share * live))

    # -- files -----------------------------------------------------------------------------------

    def save(self, directory: Path, stem: str, *, previous: dict | None = None) -> dict[str, Any]:
        """Write the graph and the labels as `stem`-graph.faiss and `stem`-labels.npy; a file
        that did not change since `previous` (the entry this index was loaded from) is kept."""
        directory = Path(directory)
        previous = previous or {}
        graph = previous.get("graph") if not self._graph_changed else None
        labels = (
            previous.get("labels") if not self._labels_changed and not self._graph_changed else None
        )
        if not graph:
            graph = f"{stem}-graph.faiss"
            _write_graph(self._graph, directory / graph)
        if not labels:
            labels = f"{stem}-labels.npy"
            atomic_write(directory / labels, npy_bytes(self._labels))
        self._graph_changed = self._labels_changed = False
        self.source = graph
        entry = {**self._params, "graph": graph, "labels": labels, "nodes": len(self._labels)}
        if len(self._removed):
            entry["removed"] = previous.get("removed") if labels == previous.get("labels") else None
            if not entry["removed"]:
                entry["removed"] = f"{stem}-removed.npy"
                atomic_write(directory / entry["removed"], npy_bytes(self._removed))
        return entry

    @classmethod
    def load(
        cls, directory: Path, entry: dict[str, Any], vectors: np.ndarray, *, writable: bool = False
    ) -> HnswIndex:
        """The saved graph, its codes memory-mapped (read-only), or read into memory with
        `writable` (a writer that adds to it)."""
        directory = Path(directory)
        path = directory / entry["graph"]
        flags = 0 if writable else faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
        try:
            graph = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            if not path.is_file():
                raise FileNotFoundError(path) from exc
            raise IndexStateError(f"{path} is damaged ({str(exc).splitlines()[0]})") from exc
        labels = load_npy(directory / entry["labels"])
        if labels.ndim != 1 or len(labels) != graph.ntotal or graph.d != vectors.shape[1]:
            raise IndexStateError(
                f"{path} does not fit its labels or the matrix ({graph.ntotal} nodes of "
                f"{graph.d} dims, {labels.shape} labels, matrix {vectors.shape})"
            )
        removed = None
        if entry.get("removed"):
            removed = load_npy(directory / entry["removed"])
        files = ("graph", "labels", "removed")
        params = {key: value for key, value in entry.items() if key not in files}
        index = cls(vectors, graph, labels, params, writable=writable, removed=removed)
        index.source = entry["graph"]
        return index

    def _make_writable(self) -> None:
        if not self._writable:
            raise IndexStateError(
                "this graph was opened read-only (memory-mapped); open it with writable=True"
            )


def carry_graph(
    directory: Path,
    entry: dict[str, Any],
    vectors: np.ndarray,
    matrix: np.ndarray,
    new_rows: np.ndarray | None,
    settings: AnnSettings,
    *,
    progress: bool = False,
    loaded: VectorIndex | None = None,
) -> HnswIndex | None:
    """The saved graph `entry` (over `vectors`) carried over to a new `matrix`: row r of
    `vectors` is row `new_rows[r]` of `matrix` (-1: removed; None: the same rows, more
    appended). It is memory-mapped (or shares `loaded`'s graph: the index a reader opened
    from `entry`), or read into memory and grown when more than `max_uncovered_rows` rows
    lack a node. None when tombstones pass `max_tombstone_share` (build it afresh); unreadable
    files raise as `HnswIndex.load` does.

    Example:
        >>> carry_graph(folder, entry, old, new, None, AnnSettings())  # doctest: +SKIP
    """

    def opened(writable: bool) -> HnswIndex:
        shared = isinstance(loaded, HnswIndex) and not loaded.writable
        if not writable and shared and loaded.source == entry.get("graph"):
            index = loaded.reader_copy()
        else:
            index = HnswIndex.load(directory, entry, vectors, writable=writable)
        if new_rows is None:
            index.bind(matrix)
        else:
            index.renumber(new_rows, matrix)
        return index

    index = opened(writable=False)
    if index.tombstone_share > settings.max_tombstone_share:
        return None
    if index.uncovered > settings.max_uncovered_rows:
        index = opened(writable=True)  # read into memory, to add to
        index.grow(progress=progress)
    return index


def calibrate(
    index: HnswIndex, vectors: np.ndarray, settings: AnnSettings
) -> tuple[int, int, float, int]:
    """The search width and the number of its candidates to rescore for a recall@10 target:
    the smallest of `settings.search_widths` whose mean recall@10 against exact search reaches
    the target when all its candidates are rescored, and the fewest of those candidates (best
    first by int8 score) that still reach it. Returns (width, rescored, recall, queries):
    queries are rows sampled from `vectors`, each excluding itself. A result counts as found
    when its exact score reaches the 10th best exact score, so ties between duplicates are not
    misses. When no width reaches the target, the widest is kept (its recall recorded:
    `stylefinder info` shows it).

    Example:
        >>> calibrate(index, matrix, AnnSettings())  # doctest: +SKIP
        (48, 24, 0.986, 200)
    """
    n = len(vectors)
    rng = np.random.default_rng(settings.seed + 1)
    rows = np.sort(rng.choice(n, size=min(n, settings.queries), replace=False))
    asked = np.asarray(vectors[rows], np.float32)
    kth = _exact_kth_scores(vectors, asked, rows, _K)
    target = settings.target_recall
    recall: dict[int, float] = {}
    for width in settings.search_widths:
        pools = sorted({p for p in (*_POOLS, width) if _K <= p <= width})
        found = dict.fromkeys(pools, 0)
        for query, row, floor in zip(asked, rows, kth, strict=True):
            candidates = index._graph_rows(query, width, None, width + 1)
            candidates = candidates[candidates != row]
            exact = np.asarray(index._rows(candidates) @ query, np.float32)
            for pool in pools:
                best = np.sort(exact[:pool])[::-1][:_K]
                found[pool] += int(np.count_nonzero(best >= floor - 1e-6))
        recall = {pool: round(count / (_K * len(rows)), 4) for pool, count in found.items()}
        if recall[pools[-1]] >= target:
            pool = next(p for p in pools if recall[p] >= target)
            return width, pool, recall[pool], len(rows)
    widest = settings.search_widths[-1]
    return widest, widest, recall.get(widest, 0.0), len(rows)


def calibrate_filter(
    index: HnswIndex, vectors: np.ndarray, settings: AnnSettings
) -> tuple[float, float] | None:
    """How much wider a filtered graph search must be: the smallest exponent e of
    `_FILTER_EXPONENTS` for which searches of width `search_width / share ** e` reach
    `target_recall - 0.03` recall@10 under a random filter passing `share` of the rows: 10%,
    or just more than filters scored exactly pass (a random filter is the hardest kind: real
    ones, such as a category, pass rows near the query more often).
    Returns (e, recall), or None when filters that narrow are scored exactly anyway.

    Example:
        >>> calibrate_filter(index, matrix, AnnSettings())  # doctest: +SKIP
        (0.5, 0.961)
    """
    n = len(vectors)
    share = max(0.1, 1.1 * index._exact_filter_limit(n) / max(1, n))  # the graph's narrowest
    if share > 0.5 or n <= 10 * _K:
        return None
    rng = np.random.default_rng(settings.seed + 2)
    allowed = rng.random(n) < share
    rows = np.sort(rng.choice(np.flatnonzero(allowed), size=min(100, settings.queries)))
    asked = np.asarray(vectors[rows], np.float32)
    passing = np.flatnonzero(allowed)
    kth = _exact_kth_scores(vectors, asked, rows, _K, among=passing)
    target, recall = settings.target_recall - 0.03, 0.0
    for exponent in _FILTER_EXPONENTS:
        index._params["filter_exponent"] = exponent
        found = 0
        for query, row, floor in zip(asked, rows, kth, strict=True):
            _, scores = index.search(query, _K, allowed=allowed, excluded=np.array([row]))
            found += int(np.count_nonzero(scores[0] >= floor - 1e-6))
        recall = round(found / (_K * len(rows)), 4)
        if recall >= target:
            return exponent, recall
    return _FILTER_EXPONENTS[-1], recall


def _exact_kth_scores(
    vectors: np.ndarray,
    asked: np.ndarray,
    rows: np.ndarray,
    k: int,
    *,
    among: np.ndarray | None = None,
):
    """The k-th best exact score of each query row among the other rows (of `among`, rows
    ascending, when given)."""
    best = np.full((len(rows), 0), -np.inf, np.float32)
    for start in range(0, len(vectors), _BLOCK_ROWS):
        scores = asked @ np.asarray(vectors[start : start + _BLOCK_ROWS], np.float32).T
        inside = np.flatnonzero((rows >= start) & (rows < start + scores.shape[1]))
        scores[inside, rows[inside] - start] = -np.inf
        if among is not None:
            keep = np.zeros(scores.shape[1], bool)
            part = among[(among >= start) & (among < start + scores.shape[1])]
            keep[part - start] = True
            scores[:, ~keep] = -np.inf
        merged = np.concatenate([best, scores], axis=1)
        if merged.shape[1] > k:
            merged = -np.partition(-merged, k - 1, axis=1)[:, :k]
        best = merged
    return np.min(best, axis=1)


def _add_in_steps(graph, source, rows, *, progress: bool) -> None:
    """Add the vectors of `rows` (from a matrix, or an index's full rows) to `graph`, in steps,
    with a progress bar on a terminal when `progress`."""
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
            if isinstance(source, VectorIndex):
                block = source._rows(part)
            elif len(part) and part[-1] - part[0] == len(part) - 1:
                block = np.asarray(source[part[0] : part[-1] + 1], np.float32)
            else:
                block = np.asarray(source[part], np.float32)
            graph.add(np.ascontiguousarray(block))
            if bar is not None:
                bar.update(len(part))
    finally:
        faiss.omp_set_num_threads(1)  # searches: one query per call, in the caller's thread
        if bar is not None:
            bar.close()


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _write_graph(graph, path: Path) -> None:
    """Write `graph` to `path` atomically (a temporary file, fsync, rename)."""
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
