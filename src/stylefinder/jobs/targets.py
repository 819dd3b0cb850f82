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
    if isinstance(store, IndexStore):
        return store.snapshot()
    from stylefinder.index.pg_reads import PgBase

    return PgBase.read(store)


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
        return _PgRunWriter(store, base)
    settings = AnnSettings(kind=ann) if ann else None
    return store.writer(keep_restore_point=True, previous=base, ann=settings, progress=progress)


class _PgRunWriter:
    """A PostgreSQL catalog's writer with the `base` an indexing run reads (re-read after each
    commit, as a directory writer's is)."""

    def __init__(self, catalog: PgCatalog, base) -> None:
        self._writer, self._catalog, self._base = catalog.writer(), catalog, base

    @property
    def base(self):
        if self._base is None:
            self._base = base_of(self._catalog)
        return self._base

    def __enter__(self) -> _PgRunWriter:
        if self._base is None:
            self._base = base_of(self._catalog)
        self._writer.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._writer.__exit__(*exc_info)
        self._base = None

    def put(self, item, vector) -> None:
        self._writer.put(item, vector)

    def remove(self, item_id: str) -> None:
        self._writer.remove(item_id)

    def set_state(self, key: str, value: str) -> None:
        self._writer.set_state(key, value)

    def commit(self) -> int:
        generation = self._writer.commit()
        self._base = None
        return generation
