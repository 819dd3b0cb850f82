"""Items added one at a time: their image kept in the index under its content hash, the item
committed in one transaction, and the image deleted once no item refers to it.

Example:
    >>> item, old, latest = put_item(store, snapshot, "sku-1", data, vector, {})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from stylefinder.catalog.scan import bytes_hash
from stylefinder.catalog.uploads import image_extension
from stylefinder.errors import UnknownItemError
from stylefinder.index.header import utc_now
from stylefinder.index.snapshot import Snapshot
from stylefinder.index.store import IndexStore
from stylefinder.io.files import atomic_write
from stylefinder.types import Item

API_IMAGES = "images"  # the index's folder of added images


def put_item(
    store: IndexStore,
    base: Snapshot,
    item_id: str,
    image: bytes,
    vector: np.ndarray,
    metadata: Mapping[str, str | int | float],
) -> tuple[Item, Item | None, Snapshot]:
    """Add or replace `item_id` (committed atomically): (the item, the one it replaced or None,
    the snapshot committed). The image is stored under its content hash, never under a name a
    client chose; a replaced image is deleted when no other item uses it."""
    digest = bytes_hash(image)
    relative = f"{API_IMAGES}/{digest}{image_extension(image)}"
    path = store.directory / relative
    if not path.is_file():
        atomic_write(path, image)
    with store.writer(previous=base) as writer:
        row = writer.base.row_of.get(item_id)
        old = writer.base.items[row] if row is not None else None
        now = utc_now()
        item = Item(
            id=item_id,
            path=relative,
            hash=digest,
            size=len(image),
            metadata=dict(metadata),
            added_at=old.added_at if old else now,
            updated_at=now,
            source="api",
        )
        writer.put(item, vector)
    if old is not None and old.source == "api" and old.path != relative:
        forget_image(store, writer.base, old.path)
    return item, old, writer.base


def remove_item(store: IndexStore, base: Snapshot, item_id: str) -> tuple[Item, Snapshot]:
    """Remove `item_id` (committed atomically): (the item removed, the snapshot committed)."""
    with store.writer(previous=base) as writer:
        row = writer.base.row_of.get(item_id)
        if row is None:
            raise UnknownItemError(f"no item {item_id!r} in the index")
        item = writer.base.items[row]
        writer.remove(item_id)
    if item.source == "api":
        forget_image(store, writer.base, item.path)
    return item, writer.base


def forget_image(store: IndexStore, snapshot: Snapshot, relative: str) -> None:
    """Delete an added image file that no item of `snapshot` refers to any more."""
    items = snapshot.items
    same = items.many(items.rows_with_hash(Path(relative).stem))  # named by content hash
    if any(i is not None and i.source == "api" and i.path == relative for i in same):
        return
    with contextlib.suppress(FileNotFoundError):
        (store.directory / relative).unlink()
