"""A `VectorIndex` on faiss: an HNSW graph over int8 codes of the rows, rescored exactly.

The graph (faiss `IndexHNSWSQ`, one byte per dimension: 1.3 GB for 1M x 1280 instead of 5.1)
finds `search_width` candidates, which are scored against the full rows, so scores stay exact.
The search width is chosen when the graph is built (`stylefinder.index.hnsw_build`): rows
sampled as queries are searched exactly and through the graph, and the smallest width whose
mean recall@10 reaches the target is kept. Filters go into the graph search as a bitmap of
allowed nodes (faiss `IDSelectorBitmap`), with a width scaled up for the share of rows they
pass; filters passing few rows are scored exactly instead. The faiss calls themselves are in
`stylefinder.index.faiss_graph`.

faiss numbers nodes 0..n-1 in the order they were added; `labels[node]` is the row a node holds
(-1: removed, a tombstone). Rows the graph does not hold yet (added since it was saved) are
scored exactly until the writer grows the graph. Readers memory-map the saved codes.

Example:
    >>> index = build_hnsw(matrix, AnnSettings(kind="hnsw"))  # doctest: +SKIP
    >>> index.params["search_width"], index.params["recall_at_10"]  # doctest: +SKIP
    (48, 0.987)
    >>> rows, scores = index.search(matrix[:1], 10)  # doctest: +SKIP
"""

from __future__ import annotations

import copy as _copy
import math
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from stylefinder.errors import IndexStateError
from stylefinder.index.faiss_graph import add_in_steps, read_graph, search_graph, write_graph
from stylefinder.index.vector_index import AnnSettings, VectorIndex
from stylefinder.io.files import atomic_write, load_npy, npy_bytes

MAX_WIDTH = 4096  # the widest graph search; filters it cannot serve are scored exactly
CALIBRATED_K = 10  # the search width is calibrated for k = 10; larger k widen it


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

    @classmethod
    def over_new_graph(
        cls, vectors: np.ndarray, graph: faiss.IndexHNSWSQ, params: dict[str, Any]
    ) -> HnswIndex:
        """A writable index over every row of `vectors`, which `graph` holds in row order (not
        saved yet: `save` writes its graph and labels).

        Example:
            >>> index = HnswIndex.over_new_graph(matrix, graph, {"search_width": 48})
            ... # doctest: +SKIP
        """
        index = cls(vectors, graph, np.arange(len(vectors), dtype=np.int64), params, writable=True)
        index._graph_changed = index._labels_changed = True
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

    def update_params(self, **params: Any) -> None:
        """Record parameters chosen or measured at build time (saved with the index; the
        search reads `search_width`, `rescore`, `filter_exponent`).

        Example:
            >>> index.update_params(search_width=64)  # doctest: +SKIP
        """
        self._params.update(params)

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
        add_in_steps(self._graph, rows, self._rows, progress=progress)
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
        if allowed is not None and passing <= max(k, self.exact_filter_limit(live)):
            return None  # few rows pass: score them exactly
        base = int(self._params["search_width"])
        width = max(base, math.ceil(base * k / CALIBRATED_K))
        pool = int(self._params.get("rescore", base))
        count = max(pool, math.ceil(pool * k / CALIBRATED_K), k)  # candidates rescored exactly
        if allowed is not None:
            width = self._filtered_width(width, passing / max(1, live))
        bitmap = self._node_bitmap(allowed)
        uncovered = self._uncovered
        if allowed is not None and len(uncovered):
            uncovered = uncovered[allowed[uncovered]]
        while True:
            rows = self.graph_rows(query, width, min(count, width), bitmap)
            if len(rows) + len(uncovered) >= min(k, passing) or allowed is None:
                return np.concatenate([rows, uncovered])
            if width >= MAX_WIDTH:  # the graph cannot reach k of the rows that pass
                return None
            width = min(width * 4, MAX_WIDTH)

    def graph_rows(
        self, query: np.ndarray, width: int, count: int, bitmap: np.ndarray | None = None
    ) -> np.ndarray:
        """The rows of the best `count` nodes (by int8 score) that a graph search of `width`
        finds (only nodes in `bitmap` when given), best first; tombstones left out.

        Example:
            >>> index.graph_rows(matrix[0], width=48, count=10)  # doctest: +SKIP
            array([   0,  517, ...])
        """
        rows = self._labels[search_graph(self._graph, query, width, count, bitmap)]
        return rows[rows >= 0]

    def _filtered_width(self, width: int, share: float) -> int:
        """The search width for a filter passing `share` of the rows: `width` / share ** e, the
        exponent e calibrated at build time (1 without calibration: a graph search then finds
        as many allowed nodes as an unfiltered search finds nodes)."""
        exponent = float(self._params.get("filter_exponent", 1.0))
        return min(max(width, math.ceil(width / share**exponent)), MAX_WIDTH)

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

    def exact_filter_limit(self, live: int) -> int:
        """Filters passing at most this many of `live` rows are scored exactly."""
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
            write_graph(self._graph, directory / graph)
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
        graph = read_graph(path, writable=writable)
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
