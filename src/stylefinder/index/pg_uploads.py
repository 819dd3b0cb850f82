"""Items added one at a time to a PostgreSQL catalog (the API's writes): the image kept in the
catalog's `images` table under its content hash, so every replica serves it, and the item
committed in one transaction; an image no item refers to any more is deleted.

An image is stored before its item's commit: a process killed between the two leaves an image
no item names (content-addressed, harmless; the next put or removal of that hash clears it).

Example:
    >>> item, old = put_item(catalog, "sku-1", data, vector, {"category": "Dress"})
    ... # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from stylefinder.catalog.scan import bytes_hash
from stylefinder.catalog.uploads import image_extension
from stylefinder.errors import UnknownItemError
from stylefinder.index.header import utc_now
from stylefinder.index.uploads import API_IMAGES
from stylefinder.types import Item

if TYPE_CHECKING:
    from stylefinder.index.pg_catalog import PgCatalog


def put_item(
    catalog: PgCatalog,
    item_id: str,
    image: bytes,
    vector: np.ndarray,
    metadata: Mapping[str, str | int | float],
) -> tuple[Item, Item | None]:
    """Add or replace `item_id`, committed in one transaction: (the item, the one it replaced
    or None).

    Example:
        >>> put_item(catalog, "sku-1", data, vector, {})[0].source  # doctest: +SKIP
        'api'
    """
    digest = bytes_hash(image)
    with catalog.connection() as conn:
        conn.execute(
            _sql(
                catalog,
                "INSERT INTO {images} (content_hash, data) VALUES (%s, %s) "
                "ON CONFLICT (content_hash) DO NOTHING",
            ),
            (digest, image),
        )
    old = _existing(catalog, item_id)
    now = utc_now()
    item = Item(
        id=item_id,
        path=f"{API_IMAGES}/{digest}{image_extension(image)}",
        hash=digest,
        size=len(image),
        metadata=dict(metadata),
        added_at=old.added_at if old else now,
        updated_at=now,
        source="api",
    )
    with catalog.writer() as writer:
        writer.put(item, vector)
    if old is not None and old.source == "api" and old.hash != digest:
        _forget_image(catalog, old.hash)
    return item, old


def remove_item(catalog: PgCatalog, item_id: str) -> Item:
    """Remove `item_id` (committed in one transaction); returns what was removed.

    Example:
        >>> remove_item(catalog, "sku-1").id  # doctest: +SKIP
        'sku-1'
    """
    item = catalog.item(item_id)
    with catalog.writer() as writer:
        writer.remove(item_id)
    if item.source == "api":
        _forget_image(catalog, item.hash)
    return item


def stored_image(catalog: PgCatalog, item: Item) -> bytes | None:
    """The image of an item added through the API, or None (a catalog file, or gone)."""
    if item.source != "api":
        return None
    with catalog.connection() as conn:
        row = conn.execute(
            _sql(catalog, "SELECT data FROM {images} WHERE content_hash = %s"), (item.hash,)
        ).fetchone()
    return None if row is None else bytes(row[0])


def _existing(catalog: PgCatalog, item_id: str) -> Item | None:
    try:
        return catalog.item(item_id)
    except UnknownItemError:
        return None


def _forget_image(catalog: PgCatalog, digest: str) -> None:
    """Delete the image `digest` unless an item added through the API still shows it."""
    with catalog.connection() as conn:
        conn.execute(
            _sql(
                catalog,
                "DELETE FROM {images} WHERE content_hash = %s AND NOT EXISTS "
                "(SELECT 1 FROM {items} WHERE content_hash = %s AND source = 'api')",
            ),
            (digest, digest),
        )


def _sql(catalog: PgCatalog, text: str):
    """`text` with `{images}` and `{items}` naming the catalog's tables."""
    from psycopg import sql

    schema = sql.Identifier(catalog.target.schema)
    return sql.SQL(text).format(
        images=sql.SQL("{}.images").format(schema), items=sql.SQL("{}.items").format(schema)
    )
