"""Open a catalog by where it lives: an index directory, or a PostgreSQL URL.

Example:
    >>> open_store("shop-index")  # doctest: +SKIP
    <IndexStore shop-index>
    >>> open_store("postgresql://shop@db/catalog?schema=spring")  # doctest: +SKIP
    PgCatalog(postgresql://shop@db/catalog, schema 'spring', 1000 items)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stylefinder.index.pg_connect import is_database_url
from stylefinder.index.store import IndexStore

if TYPE_CHECKING:
    from stylefinder.index.pg_catalog import PgCatalog


def open_store(location: str | Path) -> IndexStore | PgCatalog:
    """The catalog at `location` (`postgresql://...`: a PostgreSQL catalog, see
    `index.pg_catalog`; anything else: an index directory), or `IndexStateError` saying what
    is wrong.

    Example:
        >>> open_store("shop-index").header.backbone  # doctest: +SKIP
        'efficientnet-lite0'
    """
    if is_database_url(str(location)):
        from stylefinder.index.pg_catalog import PgCatalog

        return PgCatalog.open(str(location))
    return IndexStore.open(location)
