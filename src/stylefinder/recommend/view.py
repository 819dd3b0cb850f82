"""One committed generation as queries see it: its search space, filters and results.

A `CatalogView` is made per snapshot and thrown away when the index moves on, so its derived
state (the tuned space, the metadata columns, the filter values) is computed once, on first use,
and never needs invalidating.

Example:
    >>> view = CatalogView(store, store.snapshot())  # doctest: +SKIP
    >>> [r.id for r in view.search(vector, k=3)]  # doctest: +SKIP
    ['dress-12', 'dress-40', 'dress-7']
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from stylefinder.catalog.remote import is_remote
from stylefinder.errors import StaleSnapshotError, UnknownItemError
from stylefinder.index.snapshot import Snapshot
from stylefinder.index.store import IndexStore
from stylefinder.index.text_index import match_rows, rows_matching
from stylefinder.index.vector_index import ExactIndex, VectorIndex
from stylefinder.recommend.filters import Filters, MetadataColumns, column_values
from stylefinder.recommend.projection import Projection
from stylefinder.recommend.text_query import TextQuery, tiered
from stylefinder.recommend.tuned_space import tuned_space
from stylefinder.types import Item

T = TypeVar("T")


class _Reloading(Protocol):
    def reload(self) -> bool: ...


def reading_again_when_renumbered(method: Callable[..., T]) -> Callable[..., T]:
    """Decorate a query method of an object with `reload()` (the `Engine`): when a compaction
    renumbered the rows of the view it read meanwhile (another writer committed), it reloads
    and runs the query once more."""

    @functools.wraps(method)
    def query(self: _Reloading, *args, **kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except StaleSnapshotError:
            if not self.reload():
                raise
            return method(self, *args, **kwargs)

    return query


@dataclass(frozen=True)
class Recommendation:
    """One result: the item's id, its image path, cosine similarity and metadata."""

    id: str
    path: str
    score: float
    metadata: dict[str, str]

    def to_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "score": self.score, "metadata": self.metadata}


class CatalogView:
    """The derived state of one snapshot of `store`, each part built once on first use.

    Thread-safe: concurrent first queries project the matrix once.
    """

    def __init__(self, store: IndexStore, snapshot: Snapshot) -> None:
        self.store = store
        self.snapshot = snapshot
        self._space_lock = threading.Lock()
        self._space: tuple[Projection | None, np.ndarray, VectorIndex] | None = None

    def __len__(self) -> int:
        return len(self.snapshot)

    @property
    def generation(self) -> int:
        """The committed generation this view reads."""
        return self.snapshot.generation

    @property
    def state(self) -> dict[str, str]:
        """What writers recorded besides items (the catalog folder, the display settings)."""
        return self.snapshot.state

    @property
    def items(self) -> Sequence[Item]:
        """Every item of this generation."""
        return self.snapshot.items

    @property
    def known_items(self) -> Snapshot:
        """The item ids shoppers' events may name (see `shoppers.base.KnownItems`)."""
        return self.snapshot

    # -- the searched space ------------------------------------------------------------------

    def space(self) -> tuple[Projection | None, np.ndarray, VectorIndex]:
        """The projection, searched matrix and vector index: the committed matrix and index,
        or on a tuned index the projected ones (written to the index by the first reader that
        needs them, memory-mapped by later ones)."""
        with self._space_lock:
            if self._space is None:
                projection = Projection.load(self.store.directory)
                if projection is None:
                    matrix = self.snapshot.vectors
                    index = self.snapshot.index
                    index = index if index is not None else ExactIndex(matrix)
                else:
                    matrix, index = tuned_space(self.store.directory, self.snapshot, projection)
                self._space = (projection, matrix, index)
            return self._space

    @property
    def projection(self) -> Projection | None:
        """The projection learned by `stylefinder tune`, if the index has one."""
        return self.space()[0]

    @property
    def matrix(self) -> np.ndarray:
        """The searched matrix (projected on a tuned index), one row per matrix row."""
        return self.space()[1]

    @property
    def vector_index(self) -> VectorIndex:
        return self.space()[2]

    # -- items and filters -------------------------------------------------------------------

    def row(self, item_id: str) -> int:
        """The matrix row of item `item_id`, or `UnknownItemError`."""
        row = self.snapshot.row_of.get(item_id)
        if row is None:
            raise UnknownItemError(f"no item {item_id!r} in the index")
        return row

    def item(self, item_id: str) -> Item:
        return self.snapshot.items[self.row(item_id)]

    @cached_property
    def metadata_columns(self) -> MetadataColumns:
        return MetadataColumns(self.snapshot.items.by_row())

    @cached_property
    def filter_columns(self) -> dict[str, list[str]]:
        """Columns with few enough distinct values to filter on, and their values."""
        return column_values(self.snapshot.items)

    def allowed(self, filters: Filters | None) -> np.ndarray:
        """The rows that pass `filters` (empty rows never do)."""
        return self.metadata_columns.mask(filters)

    def live_or_allowed(self, filters: Filters | None) -> np.ndarray | None:
        """`allowed(filters)`, or without filters the rows that hold an item (None: all do)."""
        if filters:
            return self.allowed(filters)
        if len(self.snapshot) < self.snapshot.size:  # removed items' empty rows
            return self.vector_index.live_mask()
        return None

    def browse(
        self, *, offset: int = 0, limit: int = 20, filters: Filters | None = None
    ) -> tuple[list[Item], int]:
        """A page of items (in index order) that pass `filters`, and how many pass."""
        rows = np.flatnonzero(self.allowed(filters))
        page = rows[max(0, offset) : max(0, offset) + max(0, limit)]
        return [item for item in self.snapshot.items.many(page) if item is not None], len(rows)

    # -- search ------------------------------------------------------------------------------

    def search(
        self,
        vector: np.ndarray,
        k: int = 5,
        *,
        exclude_rows: list[int] | None = None,
        filters: Filters | None = None,
    ) -> list[Recommendation]:
        """The `k` items nearest a unit vector of the backbone's space that pass `filters`."""
        vector = np.asarray(vector, np.float32).reshape(-1)
        dim = self.snapshot.header.dim
        if vector.shape != (dim,):
            raise ValueError(f"query vector has {vector.size} dimensions; the index has {dim}")
        found, best = self._found(vector, k, exclude_rows=exclude_rows, filters=filters)
        return self.results(found, best)

    def _found(
        self,
        vector: np.ndarray,
        k: int,
        *,
        exclude_rows: list[int] | None = None,
        filters: Filters | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the `k` nearest rows to a checked query vector (-1: none)."""
        allowed = self.allowed(filters) if filters else None
        excluded = np.asarray(exclude_rows, np.int64) if exclude_rows else None
        projection, _, index = self.space()  # exact scores, whatever finds the candidates
        if projection is not None:
            vector = projection.apply(vector)
        found, best = index.search(vector, k, allowed=allowed, excluded=excluded)
        return found[0], best[0]

    # -- rankings for hybrid search (`recommend.hybrid`): keys are matrix rows ----------------

    def text_ranking(
        self, query: TextQuery, limit: int, *, filters: Filters | None = None
    ) -> list[tuple[int, float]]:
        """The rows whose words match `query` best (at most `limit`) that pass `filters`, with
        their relevance (`text_query.tiered`: matches of every word first)."""
        allowed = self.allowed(filters) if filters else None
        every = self._matches(query.fts_expression(every=True), limit, allowed)
        if len(query.groups) == 1 or len(every) >= limit:
            return tiered(every, [], limit)
        return tiered(every, self._matches(query.fts_expression(), limit, allowed), limit)

    def text_matching(self, query: TextQuery, rows: Sequence[int]) -> tuple[set, set]:
        """Which of `rows` match every word of `query`, and which match some."""
        expressions = [query.fts_expression(every=True), query.fts_expression()]
        every, some = self.store.manifest.read(lambda con: rows_matching(con, expressions, rows))
        return every, some

    def _matches(
        self, expression: str, limit: int, allowed: np.ndarray | None
    ) -> list[tuple[int, float]]:
        """`match_rows` of `expression` that pass `allowed`: more are read while too few pass."""
        size, wanted = self.snapshot.size, limit if allowed is None else max(4 * limit, 200)
        while True:

            def read(con, wanted=wanted) -> list[tuple[int, float]]:
                return match_rows(con, expression, size=size, limit=wanted)

            found = self.store.manifest.read(read)
            if allowed is None:
                return found
            passing = [(row, score) for row, score in found if allowed[row]]
            if len(passing) >= limit or len(found) < wanted:
                return passing[:limit]
            wanted *= 4

    def vector_ranking(
        self, vector: np.ndarray, limit: int, *, filters: Filters | None = None
    ) -> list[tuple[int, float]]:
        """The rows nearest a unit vector of the backbone's space, best first, with cosine
        similarity."""
        found, best = self._found(np.asarray(vector, np.float32), limit, filters=filters)
        return [
            (int(row), float(score)) for row, score in zip(found, best, strict=True) if row >= 0
        ]

    def vectors_of(self, rows: Sequence[int]) -> np.ndarray:
        """The stored vectors (the backbone's space) of some rows."""
        return np.array(self.snapshot.vectors[np.asarray(rows, np.int64)])

    def key_of(self, item_id: str) -> int:
        """The row of item `item_id` (`UnknownItemError` when there is none)."""
        return self.row(item_id)

    def keys_with_hash(self, digest: str) -> list[int]:
        """The rows of items whose image has content hash `digest`."""
        return self.snapshot.items.rows_with_hash(digest)

    def results_of(self, rows: Sequence[int], scores: Sequence[float]) -> list[Recommendation]:
        return self.results(np.asarray(rows, np.int64), np.asarray(scores, np.float32))

    def nearest(
        self,
        vector: np.ndarray,
        k: int = 5,
        *,
        exclude_ids: Sequence[str] = (),
        exclude_hash: str | None = None,
        filters: Filters | None = None,
    ) -> list[Recommendation]:
        """`search` without the items `exclude_ids` (unknown ids are ignored) and without items
        whose image has content hash `exclude_hash` (a query that is a catalog file).

        Example:
            >>> view.nearest(vector, 3, exclude_hash=content_hash(photo))  # doctest: +SKIP
        """
        rows = [
            row for item_id in exclude_ids if (row := self.snapshot.row_of.get(item_id)) is not None
        ]
        if exclude_hash:
            rows += self.snapshot.items.rows_with_hash(exclude_hash)
        return self.search(vector, k, exclude_rows=rows, filters=filters)

    def similar(
        self, item_id: str, k: int = 5, *, filters: Filters | None = None
    ) -> list[Recommendation]:
        """The `k` items most similar to item `item_id`, without it or byte-identical copies."""
        row = self.row(item_id)
        exclude = [row, *self.snapshot.items.rows_with_hash(self.snapshot.items[row].hash)]
        vector = np.array(self.snapshot.vectors[row])
        return self.search(vector, k, exclude_rows=exclude, filters=filters)

    def results(self, rows, scores) -> list[Recommendation]:
        """Recommendations for found `rows` (-1: none) and their scores, items read at once."""
        rows, scores = np.asarray(rows), np.asarray(scores)
        found = rows >= 0
        items = self.snapshot.items.many(rows[found])
        return [
            Recommendation(
                item.id, self.image_path(item), round(float(score), 6), dict(item.metadata)
            )
            for item, score in zip(items, scores[found], strict=True)
            if item is not None
        ]

    def stored_image(self, item: Item) -> bytes | None:
        """None: an index directory keeps every image as a file (see `image_path`)."""
        return None

    def image_path(self, item: Item) -> str:
        """Where the item's image file is (absolute when its folder is known)."""
        if item.source == "api":
            return str(self.store.directory / item.path)
        root = self.snapshot.catalog_root
        if is_remote(item.path):  # on object storage: its URI
            return item.path
        return str(Path(root) / item.path) if root else item.path
