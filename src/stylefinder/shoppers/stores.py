"""The shoppers' event store that goes with a catalog: its index directory's shoppers file,
or the tables of its PostgreSQL schema.

Example:
    >>> shoppers_of(IndexStore.open("shop-index")).users()  # doctest: +SKIP
    ['u-1', 'u-2']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stylefinder.index.store import IndexStore
from stylefinder.shoppers.base import EventStore
from stylefinder.shoppers.sqlite import SqliteEventStore

if TYPE_CHECKING:
    from stylefinder.index.pg_catalog import PgCatalog


def shoppers_of(store: IndexStore | PgCatalog) -> EventStore:
    """The event store of the catalog `store`.

    Example:
        >>> shoppers_of(store).add_event("u-1", "sku-1", "like", known_items={"sku-1"})
        ... # doctest: +SKIP
    """
    if isinstance(store, IndexStore):
        return SqliteEventStore(store.directory)
    from stylefinder.shoppers.postgres import PostgresEventStore

    return PostgresEventStore(store.target)
