"""The part of search that finds candidate rows, behind one interface: `VectorIndex`.

A vector index answers "which rows are most similar to these queries?" over the rows of a
matrix of unit vectors (the index's committed matrix, or a tuned index's projected one). Every
implementation returns exact cosine similarities: approximate ones find candidates, which are
then scored against the full rows. Rows keep their numbers: `remove` leaves a tombstone, and
`renumber` follows a store that compacts its matrix.

Implementations:
- `ExactIndex`: one matrix product over the live rows. The reference, and the default for
  catalogs below `AnnSettings.min_rows` (a few milliseconds there anyway).
- `HnswIndex` (`stylefinder.index.hnsw`): a faiss HNSW graph over int8 codes of the rows.

Example:
    >>> import numpy as np
    >>> vectors = np.eye(4, dtype=np.float32)
    >>> index = ExactIndex(vectors)
    >>> rows, scores = index.search(vectors[[1]], k=2, excluded=np.array([1]))
    >>> rows.tolist(), len(index)
    ([[0, 2]], 4)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from stylefinder.index.search import best_rows, cosine_scores, top_k
from stylefinder.io.files import atomic_write, load_npy, npy_bytes

KINDS = ("auto", "exact", "hnsw")
_MAX_DROPPED = 256  # excluded rows asked for as extra candidates; more go into the mask


@dataclass(frozen=True)
class AnnSettings:
    """Which vector index a commit builds, and how (the defaults suit 1280-d image vectors).

    `kind` "auto" builds an HNSW graph from `min_rows` rows and searches smaller catalogs
    exactly. The graph's search width is chosen on the index's own rows: the smallest of
    `search_widths` whose recall@10 against exact search reaches `target_recall`.

    Example:
        >>> AnnSettings(kind="hnsw", min_rows=0).kind
        'hnsw'
    """

    kind: str = "auto"
    min_rows: int = 20_000
    target_recall: float = 0.98
    degree: int = 32  # graph neighbours per node (faiss HNSW "M")
    build_width: int = 64  # candidates considered while inserting a node (efConstruction)
    search_widths: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
    queries: int = 200  # rows used as queries to measure recall
    exact_filter_rows: int = 10_000  # filters passing at most this many rows: scored exactly
    exact_filter_share: float = 0.01  # ... or at most this share of the rows
    max_uncovered_rows: int = 4096  # rows added after the graph, scored exactly, before growing
    max_tombstone_share: float = 0.2  # removed rows in the graph, as a share, before rebuilding
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown vector index {self.kind!r}; choose one of {', '.join(KINDS)}"
            )

    def chosen_kind(self, rows: int, current: str = "") -> str:
        """The kind to build for `rows` rows ("auto" resolved). An index whose `current` kind is
        a graph keeps it down to half of `min_rows`, so that a catalog near the threshold does
        not drop and rebuild its graph as it shrinks and grows.

        Example:
            >>> AnnSettings().chosen_kind(1000), AnnSettings().chosen_kind(50_000)
            ('exact', 'hnsw')
            >>> AnnSettings().chosen_kind(15_000, current="hnsw")
            'hnsw'
        """
        if self.kind != "auto":
            return self.kind
        threshold = self.min_rows // 2 if current == "hnsw" else self.min_rows
        return "hnsw" if rows >= threshold else "exact"


DEFAULT_ANN = AnnSettings()


class VectorIndex(ABC):
    """Finds the rows most similar to queries, with exact cosine scores.

    Row numbers index `vectors`, the full rows (usually a memory map); rows added with `add`
    are kept with the index until it is bound to a matrix holding them (`load`, `bind`).
    """

    kind: ClassVar[str]

    def __init__(self, vectors: np.ndarray) -> None:
        self._vectors = vectors
        self._added: dict[int, np.ndarray] = {}  # rows past `vectors`, added since
        self._live_cache: np.ndarray | None = None

    @property
    def params(self) -> dict[str, Any]:
        """What was chosen at build time and measured (shown by `stylefinder info`)."""
        return {"kind": self.kind}

    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    @abstractmethod
    def __len__(self) -> int:
        """How many live rows the index searches."""

    @abstractmethod
    def live_rows(self) -> np.ndarray:
        """The live rows, ascending."""

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Add `vectors` (n, D) as rows `rows` (n,): rows not yet in the index."""
        rows, vectors = _checked_rows(rows, vectors, self.dim)
        for row, vector in zip(rows.tolist(), vectors, strict=True):
            if row >= len(self._vectors):
                self._added[row] = vector
        self._add(rows, vectors)
        self._changed()

    @abstractmethod
    def _add(self, rows: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def remove(self, rows: np.ndarray) -> None:
        """Remove rows: they are never returned again (unknown rows are ignored)."""

    @abstractmethod
    def renumber(self, new_rows: np.ndarray, vectors: np.ndarray) -> None:
        """Follow a compaction of the matrix: row r is now `new_rows[r]` (-1: removed), and
        `vectors` is the compacted matrix."""

    def bind(self, vectors: np.ndarray) -> None:
        """Use `vectors` (which holds every row, the added ones too) as the full rows."""
        if len(vectors) < self.size:
            raise ValueError(f"{len(vectors)} rows given; the index has rows up to {self.size}")
        self._vectors = vectors
        self._added = {}
        self._changed()

    @property
    def size(self) -> int:
        """One more than the highest row the index knows (live or removed)."""
        return max(len(self._vectors), max(self._added, default=-1) + 1)

    @abstractmethod
    def _candidates(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> np.ndarray | None:
        """Candidate rows for the best `k` among `allowed` (a bool mask over `size` rows, live
        rows only; None: every live row), or None to score every allowed row exactly."""

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        excluded: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `k` best live rows for each query (Q, D), best first: rows (Q, k) and exact
        cosine scores (Q, k), padded with -1 and -inf where fewer than `k` rows pass.

        `allowed` and `excluded` are bool masks over rows or arrays of rows: only allowed rows
        (default: all) that are not excluded come back.

        Example:
            >>> rows, scores = index.search(query[None], 5, allowed=mask)  # doctest: +SKIP
        """
        queries = np.asarray(queries, np.float32)
        if queries.ndim == 1:
            queries = queries[None]
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries of shape {queries.shape}; the index has {self.dim} dims")
        k = max(0, int(k))
        out_rows = np.full((len(queries), k), -1, np.int64)
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        if k == 0:
            return out_rows, out_scores
        size = self.size
        mask = None if allowed is None else self.live_mask() & _as_mask(allowed, size)
        dropped = None if excluded is None else _as_rows(excluded, size)
        if dropped is not None and len(dropped) > _MAX_DROPPED:  # many: part of the mask
            mask = self.live_mask().copy() if mask is None else mask
            mask[dropped] = False
            dropped = None
        extra = 0 if dropped is None else len(dropped)
        for i, query in enumerate(queries):
            candidates = self._candidates(query, k + extra, mask)
            if candidates is None:
                candidates = np.flatnonzero(mask) if mask is not None else self.live_rows()
            if extra:
                candidates = candidates[~np.isin(candidates, dropped)]
            rows, scores = self._rescore(query, candidates, k)
            out_rows[i, : len(rows)], out_scores[i, : len(rows)] = rows, scores
        return out_rows, out_scores

    def live_mask(self) -> np.ndarray:
        """The live rows as a bool mask over `size` rows (cached until the index changes)."""
        if self._live_cache is None or len(self._live_cache) != self.size:
            mask = np.zeros(self.size, bool)
            mask[self.live_rows()] = True
            self._live_cache = mask
        return self._live_cache

    def _changed(self) -> None:
        self._live_cache = None

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        """The full vectors of `rows` (ascending)."""
        inside = rows < len(self._vectors)
        if inside.all():
            return np.asarray(self._vectors[rows], np.float32)
        out = np.empty((len(rows), self.dim), np.float32)
        out[inside] = self._vectors[rows[inside]]
        for at in np.flatnonzero(~inside):
            out[at] = self._added[int(rows[at])]
        return out

    def _rescore(self, query: np.ndarray, rows: np.ndarray, k: int):
        """The best `k` of candidate `rows` by exact score, best first (ties: lower row)."""
        rows = np.unique(np.asarray(rows, np.int64))
        if not len(rows):
            return rows, np.zeros(0, np.float32)
        if len(rows) * 4 > len(self._vectors) and not self._added:  # most rows: one product
            scores = cosine_scores(self._vectors, query)[rows]
        else:
            scores = np.asarray(self._rows(rows) @ query, np.float32)
        return best_rows(rows, scores, k)

    @abstractmethod
    def save(
        self, directory: Path, stem: str, *, previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Write what the index needs besides the full rows to files named `stem`-*, keeping
        the files of `previous` (the entry it was loaded from) that did not change; returns the
        entry that `load` takes (the files and the params)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, entry: dict[str, Any], vectors: np.ndarray) -> VectorIndex:
        """The index `save` wrote, searching `vectors` (read-only, memory-mapped where the
        library allows)."""


class ExactIndex(VectorIndex):
    """Exact search: every allowed row scored, one matrix product (the reference).

    Example:
        >>> import numpy as np
        >>> index = ExactIndex(np.eye(3, dtype=np.float32))
        >>> index.remove(np.array([0]))
        >>> index.search(np.array([1, 0, 0], np.float32), 3)[0].tolist()
        [[1, 2, -1]]
    """

    kind = "exact"

    def __init__(self, vectors: np.ndarray, removed: np.ndarray | None = None) -> None:
        super().__init__(vectors)
        self._live = np.ones(len(vectors), bool)
        if removed is not None and len(removed):
            self._live[np.asarray(removed, np.int64)] = False

    def __len__(self) -> int:
        return int(np.count_nonzero(self._live))

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self._live)

    def live_mask(self) -> np.ndarray:
        return self._live

    def _add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        if len(rows) and rows.max() >= len(self._live):
            self._live = np.concatenate(
                [self._live, np.zeros(rows.max() + 1 - len(self._live), bool)]
            )
        self._live[rows] = True

    def remove(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.int64)
        self._live[rows[(rows >= 0) & (rows < len(self._live))]] = False
        self._changed()

    def renumber(self, new_rows: np.ndarray, vectors: np.ndarray) -> None:
        new_rows = np.asarray(new_rows, np.int64)
        live = np.zeros(len(vectors), bool)
        kept = new_rows[: len(self._live)][self._live[: len(new_rows)]]
        live[kept[kept >= 0]] = True
        self._vectors, self._added, self._live = vectors, {}, live
        self._changed()

    def bind(self, vectors: np.ndarray) -> None:
        super().bind(vectors)
        if len(self._live) < len(vectors):  # rows beyond those known: live
            self._live = np.concatenate([self._live, np.ones(len(vectors) - len(self._live), bool)])

    def _candidates(self, query, k, allowed):
        return None

    def search(self, queries, k, *, allowed=None, excluded=None):
        if allowed is None and excluded is None and self._live.all() and not self._added:
            queries = np.asarray(queries, np.float32)
            queries = queries[None] if queries.ndim == 1 else queries
            k = max(0, int(k))
            rows = np.full((len(queries), k), -1, np.int64)
            scores = np.full((len(queries), k), -np.inf, np.float32)
            for i, query in enumerate(queries):
                found, best = top_k(self._vectors, query, k)
                rows[i, : len(found)], scores[i, : len(found)] = found, best
            return rows, scores
        return super().search(queries, k, allowed=allowed, excluded=excluded)

    def save(
        self, directory: Path, stem: str, *, previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        removed = np.flatnonzero(~self._live)
        entry: dict[str, Any] = {"kind": self.kind, "rows": len(self._live)}
        if len(removed):
            name = f"{stem}-removed.npy"
            atomic_write(directory / name, npy_bytes(removed.astype(np.int64)))
            entry["removed"] = name
        return entry

    @classmethod
    def load(cls, directory: Path, entry: dict[str, Any], vectors: np.ndarray) -> ExactIndex:
        removed = None
        if entry.get("removed"):
            removed = load_npy(Path(directory) / entry["removed"])
        return cls(vectors, removed)


def entry_files(entry: dict[str, Any]) -> set[str]:
    """The file names an index entry refers to.

    Example:
        >>> sorted(entry_files({"kind": "hnsw", "graph": "g.faiss", "labels": "l.npy"}))
        ['g.faiss', 'l.npy']
    """
    return {str(entry[key]) for key in ("graph", "labels", "removed") if entry.get(key)}


def _as_mask(rows_or_mask: np.ndarray, size: int) -> np.ndarray:
    array = np.asarray(rows_or_mask)
    if array.dtype == bool:
        if len(array) >= size:
            return array[:size]
        return np.concatenate([array, np.zeros(size - len(array), bool)])
    mask = np.zeros(size, bool)
    rows = array.astype(np.int64).reshape(-1)
    mask[rows[(rows >= 0) & (rows < size)]] = True
    return mask


def _as_rows(rows_or_mask: np.ndarray, size: int) -> np.ndarray:
    array = np.asarray(rows_or_mask)
    if array.dtype == bool:
        return np.flatnonzero(array[:size])
    rows = array.astype(np.int64).reshape(-1)
    return np.unique(rows[(rows >= 0) & (rows < size)])


def _checked_rows(rows: np.ndarray, vectors: np.ndarray, dim: int):
    rows = np.asarray(rows, np.int64).reshape(-1)
    vectors = np.asarray(vectors, np.float32).reshape(len(rows), -1)
    if vectors.shape[1] != dim:
        raise ValueError(f"vectors of {vectors.shape[1]} dims; the index has {dim}")
    if len(rows) and rows.min() < 0:
        raise ValueError("rows must be non-negative")
    return rows, vectors
