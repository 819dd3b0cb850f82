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

from stylefinder.catalog.remote import is_remote
from stylefinder.errors import NotOnPostgresError
from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.index.pg_reads import browse_items, ids_with_hash
from stylefinder.index.pg_search import VectorTable, search
from stylefinder.index.pg_text import ids_matching, text_matches
from stylefinder.index.pg_uploads import stored_image
from stylefinder.recommend.columns import describe_columns
from stylefinder.recommend.filters import Filters, column_values
from stylefinder.recommend.pg_filters import filter_clause
from stylefinder.recommend.pg_tuned import TunedSpace, catch_up, stored_projection
from stylefinder.recommend.projection import Projection
from stylefinder.recommend.summary import IndexInfo
from stylefinder.recommend.text_query import TextQuery, tiered
from stylefinder.recommend.view import Recommendation
from stylefinder.types import Item

ITEMS_FOR_FILTER_VALUES = 200_000  # larger catalogs: filter values are not listed
_MATRIX_PARTS = frozenset(
    [
        "snapshot",
        "space",
        "matrix",
        "vector_index",
        "row",
        "metadata_columns",
        "allowed",
        "live_or_allowed",
        "search",
        "results",
    ]
)
DIRECTORY_ONLY = "this works"


class PgCatalogView:
    """The derived state of one generation of a PostgreSQL catalog (thread-safe)."""

    def __init__(self, catalog: PgCatalog) -> None:
        self.store = catalog
        self.generation = catalog.generation()

    @cached_property
    def _tuned(self) -> tuple[Projection, TunedSpace] | None:
        """The projection `stylefinder tune` stored and its space, complete for this
        generation (the rows written since it was filled projected now, once)."""
        space = TunedSpace.of(self.store)
        if space is None:
            return None
        projection = stored_projection(self.store, space)
        catch_up(self.store, space, projection)
        return projection, space

    @property
    def projection(self) -> Projection | None:
        """The projection learned by `stylefinder tune`, if the catalog has one."""
        return self._tuned[0] if self._tuned else None

    def __len__(self) -> int:
        return self._size

    @cached_property
    def _size(self) -> int:
        return len(self.store)

    @cached_property
    def known_items(self) -> frozenset[str]:
        """The item ids shoppers' events may name."""
        return frozenset(self.store.ids())

    @cached_property
    def state(self) -> dict[str, object]:
        """What writers recorded besides items (the catalog folder, the display settings)."""
        with self.store.connection() as conn:
            rows = conn.execute(self.store.sql("SELECT key, value FROM {header}")).fetchall()
        return dict(rows)

    def item(self, item_id: str) -> Item:
        """The item `item_id`, or `UnknownItemError`."""
        return self.store.item(item_id)

    def image_path(self, item: Item) -> str:
        """Where the item's image file is (absolute when the catalog folder is known); an
        item added through the API has its image in the database (`stored_image`)."""
        if item.source == "api" or is_remote(item.path):  # in the database, or its URI
            return item.path
        root = self.state.get("catalog_root")
        return str(f"{root.rstrip('/')}/{item.path}") if root else item.path

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
        space = None
        if self._tuned is not None:  # searched in the tuned space, as an index directory is
            projection, tuned = self._tuned
            vector = projection.apply(vector)
            space = VectorTable(tuned.sql(self.store), tuned.vector_type, tuned.dim)
        hits = search(self.store, vector, k, where=where, exclude_ids=excluded, space=space)
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

    # -- rankings for hybrid search (`recommend.hybrid`): keys are item ids ------------------

    def text_ranking(
        self, query: TextQuery, limit: int, *, filters: Filters | None = None
    ) -> list[tuple[str, float]]:
        """The items whose words match `query` best (at most `limit`) that pass `filters`."""
        where = filter_clause(self.store, filters) if filters else None
        every = text_matches(self.store, query.tsquery(every=True), limit, where=where)
        if len(query.groups) == 1 or len(every) >= limit:
            return tiered(every, [], limit)
        some = text_matches(self.store, query.tsquery(), limit, where=where)
        return tiered(every, some, limit)

    def text_matching(self, query: TextQuery, ids: Sequence[str]) -> tuple[set, set]:
        """Which of `ids` match every word of `query`, and which match some."""
        every = ids_matching(self.store, query.tsquery(every=True), list(ids))
        return every, ids_matching(self.store, query.tsquery(), list(ids))

    def vector_ranking(
        self, vector: np.ndarray, limit: int, *, filters: Filters | None = None
    ) -> list[tuple[str, float]]:
        """The items nearest a unit vector of the backbone's space, with cosine similarity."""
        return [(r.id, r.score) for r in self.nearest(vector, limit, filters=filters)]

    def vectors_of(self, ids: Sequence[str]) -> np.ndarray:
        return self.store.vectors_of(list(ids))

    def key_of(self, item_id: str) -> str:
        """`item_id` itself, once known to name an item (`UnknownItemError` otherwise)."""
        return self.store.item(item_id).id

    def keys_with_hash(self, digest: str) -> list[str]:
        """The items whose image has content hash `digest` (a query that is a catalog file)."""
        return ids_with_hash(self.store, digest)

    def results_of(self, ids: Sequence[str], scores: Sequence[float]) -> list[Recommendation]:
        items = self.store.items(list(ids))
        return [
            Recommendation(item.id, self.image_path(item), round(float(score), 6), item.metadata)
            for item, score in zip(items, scores, strict=True)
        ]

    @cached_property
    def items(self) -> list[Item]:
        """Every item of this generation, by id (read once, on first use)."""
        return self.store.items(self.store.ids())

    def stored_image(self, item: Item) -> bytes | None:
        """The image of an item added through the API, kept in the database (None: a file)."""
        return stored_image(self.store, item)

    @cached_property
    def filter_columns(self) -> dict[str, list[str]]:
        """Columns with few enough distinct values to filter on, and their values."""
        return {} if self._size > ITEMS_FOR_FILTER_VALUES else column_values(self.items)

    def info(self, *, shoppers: int, events: int) -> IndexInfo:
        """Backbone, size, dates, columns and search settings of the catalog
        (`size_bytes`: what its items table and indexes take in the database)."""
        header, store = self.store.header, self.store
        with store.connection() as conn:
            size = conn.execute(
                "SELECT pg_total_relation_size(%s::regclass)", (f"{store.target.schema}.items",)
            ).fetchone()[0]
        columns = [
            {"name": c.name, "kind": c.kind, "distinct": c.distinct, "filled": c.filled}
            for c in describe_columns(self.items)
        ]
        return IndexInfo(
            directory=store.target.described,
            items=self._size,
            backbone=header.backbone,
            pooling=header.pooling,
            dim=header.dim,
            weights_fingerprint=header.weights_fingerprint,
            version=header.version,
            created_at=header.created_at,
            updated_at=self.state.get("updated_at") or header.created_at,
            catalog_root=self.state.get("catalog_root"),
            generation=self.generation,
            size_bytes=int(size),
            columns=columns,
            shoppers=shoppers,
            events=events,
            search={"kind": "hnsw", "library": f"pgvector ({store.vector_type})"},
        )

    def __getattr__(self, name: str):
        """`CatalogView`'s parts over a matrix in memory (`snapshot`, `matrix`, `row`, ...)
        are not here: the features that use them say so."""
        if name not in _MATRIX_PARTS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        raise NotOnPostgresError(
            f"{DIRECTORY_ONLY} work on index directories only, for now: `stylefinder export "
            "--index URL --to DIR` copies a PostgreSQL catalog into one"
        )
