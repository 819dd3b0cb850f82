"""Reads of a PostgreSQL catalog that indexing and browsing need, beyond `PgCatalog`'s own:
the whole catalog as an indexing run's base, pages of items, items by content hash.

Example:
    >>> base = PgBase.read(catalog)  # doctest: +SKIP
    >>> len(base), base.catalog_root  # doctest: +SKIP
    (1000, '/srv/photos')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stylefinder.index.pg_tables import ITEM_COLUMNS, item_from_row
from stylefinder.types import Item

if TYPE_CHECKING:
    from stylefinder.index.pg_catalog import PgCatalog


@dataclass(frozen=True)
class PgBase:
    """Every item of a catalog at one moment, and where its catalog folder is: what an
    indexing run compares the folder with (as a directory's `Snapshot`)."""

    catalog: PgCatalog
    items: list[Item]
    catalog_root: str | None

    @classmethod
    def read(cls, catalog: PgCatalog) -> PgBase:
        """The catalog's items now, in id order.

        Example:
            >>> PgBase.read(catalog).items[0].id  # doctest: +SKIP
            'dress-1'
        """
        with catalog.connection() as conn, conn.transaction():
            query = catalog.sql(f"SELECT {ITEM_COLUMNS} FROM {{items}} ORDER BY id")
            items = [item_from_row(row) for row in conn.execute(query)]
            row = conn.execute(
                catalog.sql("SELECT value FROM {header} WHERE key = 'catalog_root'")
            ).fetchone()
        return cls(catalog, items, None if row is None else row[0])

    def __len__(self) -> int:
        return len(self.items)

    def vector_of(self, item_id: str) -> np.ndarray:
        """The stored vector of item `item_id`."""
        return self.catalog.vectors_of([item_id])[0]


def browse_items(
    catalog: PgCatalog, *, where: tuple[Any, list] | None, offset: int, limit: int
) -> tuple[list[Item], int]:
    """A page of the items that pass `where` (a psycopg SQL clause and its parameters) in id
    order, and how many pass.

    Example:
        >>> items, total = browse_items(catalog, where=None, offset=0, limit=20)  # doctest: +SKIP
    """
    from psycopg import sql

    clause, params = where if where is not None else (sql.SQL("true"), [])
    page = sql.SQL(
        "SELECT {columns} FROM {items} WHERE {clause} ORDER BY id LIMIT {limit} OFFSET {offset}"
    ).format(
        columns=sql.SQL(ITEM_COLUMNS),
        items=catalog.sql("{items}"),
        clause=clause,
        limit=sql.Literal(int(limit)),
        offset=sql.Literal(int(offset)),
    )
    count = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(catalog.sql("{items}"), clause)
    with catalog.connection() as conn, conn.transaction():
        items = [item_from_row(row) for row in conn.execute(page, list(params))]
        total = int(conn.execute(count, list(params)).fetchone()[0])
    return items, total


def ids_with_hash(catalog: PgCatalog, digest: str) -> list[str]:
    """The ids of items whose image has content hash `digest`.

    Example:
        >>> ids_with_hash(catalog, content_hash(photo))  # doctest: +SKIP
        ['dress-12']
    """
    with catalog.connection() as conn:
        query = catalog.sql("SELECT id FROM {items} WHERE content_hash = %s")
        return [item_id for (item_id,) in conn.execute(query, (digest,))]


def passing_ids(catalog: PgCatalog, *, where: tuple[Any, list] | None) -> list[str]:
    """The ids of the items that pass `where` (None: every item), in id order.

    Example:
        >>> passing_ids(catalog, where=None)[:2]  # doctest: +SKIP
        ['dress-1', 'dress-2']
    """
    from psycopg import sql

    clause, params = where if where is not None else (sql.SQL("true"), [])
    query = sql.SQL("SELECT id FROM {} WHERE {} ORDER BY id").format(catalog.sql("{items}"), clause)
    with catalog.connection() as conn:
        return [item_id for (item_id,) in conn.execute(query, list(params))]
