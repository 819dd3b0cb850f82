"""Where an indexing run writes: an index directory, or a PostgreSQL catalog.

`build_index` reads the catalog's current items (its base), then stages puts and removals in
the store's writer and commits them; the two stores differ in how: a directory keeps a restore
point and builds its vector index at commit, PostgreSQL commits one transaction and keeps its
HNSW index up to date itself.

Example:
    >>> store = existing_store("shop-index")  # doctest: +SKIP
    >>> len(base_of(store))  # doctest: +SKIP
    1000
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stylefinder.index.pg_connect import is_database_url
from stylefinder.index.store import IndexStore
from stylefinder.index.vector_index import AnnSettings
from stylefinder.types import EmbeddingSpace

if TYPE_CHECKING:
    from stylefinder.index.pg_catalog import PgCatalog

    Store = IndexStore | PgCatalog


def in_database(location: str | Path) -> bool:
    """Whether `location` is a PostgreSQL catalog's URL rather than an index directory."""
    return is_database_url(str(location))


def existing_store(location: str | Path) -> Store | None:
    """The catalog at `location`, or None when there is none yet."""
    if in_database(location):
        from stylefinder.index.pg_catalog import PgCatalog

        return PgCatalog.open(str(location)) if PgCatalog.exists(str(location)) else None
    return IndexStore.open(location) if IndexStore.exists(location) else None


def base_of(store: Store | None):
    """What the catalog holds now (items, their vectors, the catalog folder), or None."""
    if store is None:
        return None
    return store.snapshot() if isinstance(store, IndexStore) else store.base()


def open_or_create(location: str | Path, space: EmbeddingSpace) -> Store:
    """The catalog at `location`, created for vectors of `space` when there is none."""
    if in_database(location):
        from stylefinder.index.pg_catalog import PgCatalog

        return PgCatalog.open_or_create(str(location), space)
    return IndexStore.open_or_create(location, space)


def run_writer(store: Store, *, base, ann: str | None, progress: bool):
    """The writer of an indexing run: on a directory it keeps the generation it started from
    as the restore point and builds the `ann` vector index at each commit."""
    if not isinstance(store, IndexStore):
        return store.writer()
    settings = AnnSettings(kind=ann) if ann else None
    return store.writer(keep_restore_point=True, previous=base, ann=settings, progress=progress)
