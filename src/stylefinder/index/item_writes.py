"""Items added or removed one at a time, in whichever store holds the catalog: an index
directory (`index.uploads`) or PostgreSQL (`index.pg_uploads`).

Example:
    >>> item, old, latest = put_item(store, snapshot, "sku-1", data, vector, {})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from stylefinder.index import pg_uploads, uploads
from stylefinder.index.snapshot import Snapshot
from stylefinder.index.store import IndexStore
from stylefinder.types import Item

if TYPE_CHECKING:
    from stylefinder.index.pg_catalog import PgCatalog


def put_item(
    store: IndexStore | PgCatalog,
    base: Snapshot | None,
    item_id: str,
    image: bytes,
    vector: np.ndarray,
    metadata: Mapping[str, str | int | float],
) -> tuple[Item, Item | None, Snapshot | None]:
    """Add or replace `item_id`, committed atomically: (the item, the one it replaced or
    None, the directory's snapshot committed or None). `base`: a recent snapshot of a
    directory (None for PostgreSQL).

    Example:
        >>> put_item(store, snapshot, "sku-1", data, vector, {})[0].source  # doctest: +SKIP
        'api'
    """
    if isinstance(store, IndexStore):
        return uploads.put_item(store, base, item_id, image, vector, metadata)
    item, old = pg_uploads.put_item(store, item_id, image, vector, metadata)
    return item, old, None


def remove_item(
    store: IndexStore | PgCatalog, base: Snapshot | None, item_id: str
) -> tuple[Item, Snapshot | None]:
    """Remove `item_id`, committed atomically: (the item removed, the directory's snapshot
    committed or None).

    Example:
        >>> remove_item(store, snapshot, "sku-1")[0].id  # doctest: +SKIP
        'sku-1'
    """
    if isinstance(store, IndexStore):
        return uploads.remove_item(store, base, item_id)
    return pg_uploads.remove_item(store, item_id), None
