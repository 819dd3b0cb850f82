"""The view of a catalog's committed generation, whichever store holds it.

Example:
    >>> open_view(IndexStore.open("shop-index")).generation  # doctest: +SKIP
    4
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stylefinder.index.snapshot import Snapshot
from stylefinder.index.store import IndexStore
from stylefinder.recommend.view import CatalogView

if TYPE_CHECKING:
    from stylefinder.index.pg_catalog import PgCatalog
    from stylefinder.recommend.pg_view import PgCatalogView

    CatalogStore = IndexStore | PgCatalog
    AnyView = CatalogView | PgCatalogView


def open_view(
    store: CatalogStore, *, previous: AnyView | None = None, latest: Snapshot | None = None
) -> AnyView:
    """The view of `store`'s committed generation: a `CatalogView` of an index directory, a
    `PgCatalogView` of a PostgreSQL catalog. For a directory, `previous` (a view of an earlier
    generation) or `latest` (a snapshot its writer just committed) spares re-reading what did
    not change.

    Example:
        >>> open_view(IndexStore.open("shop-index")).generation  # doctest: +SKIP
        4
    """
    if not isinstance(store, IndexStore):
        from stylefinder.recommend.pg_view import PgCatalogView

        return PgCatalogView(store)
    known = latest or (previous.snapshot if isinstance(previous, CatalogView) else None)
    return CatalogView(store, store.snapshot(previous=known))
