"""One committed generation of a PostgreSQL catalog as queries see it: search in the database.

`PgCatalogView` answers what `CatalogView` answers for an index directory (`nearest`,
`similar`, `browse`, `item`, `filter_columns`, ...), in the same form, but searches with
pgvector's HNSW index and filters with SQL (`recommend.pg_filters`), so that no replica holds
the catalog's vectors in memory. A view is made per generation; what it derives (the filter
values, the item ids events may name) is computed once, on first use.

Example:
    >>> view = PgCatalogView(PgCatalog.open("postgresql:///shop"))  # doctest: +SKIP
    >>> [r.id for r in view.nearest(vector, k=3)]  # doctest: +SKIP
    ['dress-12', 'dress-40', 'dress-7']
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np

from stylefinder.errors import StylefinderError
from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.index.pg_search import browse_items, ids_with_hash, search
from stylefinder.recommend.filters import Filters, column_values
from stylefinder.recommend.pg_filters import filter_clause
from stylefinder.recommend.view import Recommendation
from stylefinder.types import Item

ITEMS_FOR_FILTER_VALUES = 200_000  # larger catalogs: filter values are not listed


class NotOnPostgresError(StylefinderError, ValueError):
    """A feature the PostgreSQL backend does not offer yet; the message names the way round."""


class PgCatalogView:
    """The derived state of one generation of a PostgreSQL catalog (thread-safe)."""

    projection = None  # `stylefinder tune` works on index directories only, for now

    def __init__(self, catalog: PgCatalog) -> None:
        self.store = catalog
        self.generation = catalog.generation()

    def __len__(self) -> int:
        return self._size

    @cached_property
    def _size(self) -> int:
        return len(self.store)

    @cached_property
    def known_items(self) -> frozenset[str]:
        """The item ids shoppers' events may name."""
        return frozenset(self.store.ids())

    def item(self, item_id: str) -> Item:
        """The item `item_id`, or `UnknownItemError`."""
        return self.store.item(item_id)

    def image_path(self, item: Item) -> str:
        """Where the item's image file is (absolute when the catalog folder is known)."""
        root = self.store.state("catalog_root")
        return str(f"{root.rstrip('/')}/{item.path}") if root else item.path

    @cached_property
    def filter_columns(self) -> dict[str, list[str]]:
        """Columns with few enough distinct values to filter on, and their values."""
        if self._size > ITEMS_FOR_FILTER_VALUES:
            return {}
        return column_values(self.store.items(self.store.ids()))

    def browse(
        self, *, offset: int = 0, limit: int = 20, filters: Filters | None = None
    ) -> tuple[list[Item], int]:
        """A page of items (by id) that pass `filters`, and how many pass."""
        where = filter_clause(self.store, filters) if filters else None
        return browse_items(self.store, where=where, offset=max(0, offset), limit=max(0, limit))

    def nearest(
        self,
        vector: np.ndarray,
        k: int = 5,
        *,
        exclude_ids: Sequence[str] = (),
        exclude_hash: str | None = None,
        filters: Filters | None = None,
    ) -> list[Recommendation]:
        """The `k` items nearest a unit vector that pass `filters`, without `exclude_ids` and
        without items whose image has content hash `exclude_hash`.

        Example:
            >>> view.nearest(vector, 3, filters={"category": "Dress"})  # doctest: +SKIP
        """
        vector = np.asarray(vector, np.float32).reshape(-1)
        dim = self.store.header.dim
        if vector.shape != (dim,):
            raise ValueError(f"query vector has {vector.size} dimensions; the index has {dim}")
        excluded = list(exclude_ids)
        if exclude_hash:
            excluded += ids_with_hash(self.store, exclude_hash)
        where = filter_clause(self.store, filters) if filters else None
        hits = search(self.store, vector, k, where=where, exclude_ids=excluded)
        return [
            Recommendation(item.id, self.image_path(item), round(score, 6), dict(item.metadata))
            for item, score in hits
        ]

    def similar(
        self, item_id: str, k: int = 5, *, filters: Filters | None = None
    ) -> list[Recommendation]:
        """The `k` items most similar to item `item_id`, without it or byte-identical copies."""
        item = self.store.item(item_id)
        vector = self.store.vectors_of([item_id])[0]
        return self.nearest(
            vector, k, exclude_ids=[item_id], exclude_hash=item.hash, filters=filters
        )

    def not_yet(self, feature: str) -> NotOnPostgresError:
        """The error for `feature`, which needs an index directory for now."""
        return NotOnPostgresError(
            f"{feature} works on index directories only, for now: `stylefinder export --index "
            f"{self.store.target.redacted}?schema={self.store.target.schema} --to DIR` copies "
            "this catalog into one"
        )
