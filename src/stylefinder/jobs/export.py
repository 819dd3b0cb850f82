"""Copy a catalog between an index directory and PostgreSQL, either way (`stylefinder export`).

The destination is created for the source's embedding space and must hold no catalog yet. Items,
their vectors and metadata, the catalog folder and the display settings are copied in batches,
each committed (a killed export leaves a partial destination that a rerun refuses: remove it
and run again); shoppers and their events follow. What the destination cannot hold is counted
and said: a tuned projection (`stylefinder tune` again there), shoppers' tokens (only their
hashes are stored: shoppers get new ones), events of items no longer in the catalog.

Example:
    >>> summary = export_catalog("shop-index", "postgresql://shop@db/catalog?schema=spring")
    ... # doctest: +SKIP
    >>> summary.items, summary.events  # doctest: +SKIP
    (1000, 5210)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stylefinder.errors import IndexStateError
from stylefinder.index.pg_connect import shown_location
from stylefinder.index.store import IndexStore
from stylefinder.jobs.targets import base_of, existing_store, open_or_create
from stylefinder.shoppers.stores import shoppers_of
from stylefinder.types import Item

BATCH = 10_000  # items (with their vectors) read and committed at once
COPIED_STATE = ("catalog_root", "display")


@dataclass
class ExportSummary:
    """What `export_catalog` copied, and what it could not."""

    source: str
    destination: str
    items: int = 0
    shoppers: int = 0
    events: int = 0
    events_of_missing_items: int = 0
    tokens_not_copied: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def export_catalog(source: str | Path, destination: str | Path) -> ExportSummary:
    """Copy the catalog at `source` into a new one at `destination` (each an index directory
    or a `postgresql://` URL), shoppers' events included.

    Example:
        >>> export_catalog("postgresql:///shop?schema=spring", "spring-index").items
        ... # doctest: +SKIP
        1000
    """
    origin = existing_store(source)
    if origin is None:
        raise IndexStateError(f"no catalog at {shown_location(source)} to export")
    if existing_store(destination) is not None:
        raise IndexStateError(
            f"{shown_location(destination)} already holds a catalog: export into a new "
            "directory or schema (?schema=NAME), or remove that one first"
        )
    summary = ExportSummary(shown_location(source), shown_location(destination))
    base = base_of(origin)
    target = open_or_create(destination, origin.header.space)
    state = _state(origin, base)
    for batch, vectors in _batches(origin, base):
        with _writer(target) as writer:
            for item, vector in zip(batch, vectors, strict=True):
                writer.put(item, vector)
            for key, value in state.items():
                writer.set_state(key, value)
            state = {}
        summary.items += len(batch)
    if any(item.source == "api" for item in base.items):
        summary.notes.append(
            "items added through the API keep their image paths, relative to the source index "
            "directory: copy its uploads/ folder beside the destination to serve their images"
        )
    if isinstance(origin, IndexStore) and (origin.directory / "projection.npz").is_file():
        summary.notes.append(
            "the tuned projection was not copied: run `stylefinder tune` on the destination"
        )
    _copy_shoppers(origin, target, {item.id for item in base.items}, summary)
    return summary


def _batches(store, base) -> Iterator[tuple[list[Item], np.ndarray]]:
    items = list(base.items)
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        if isinstance(store, IndexStore):
            rows = [base.row_of[item.id] for item in batch]
            yield batch, np.asarray(base.vectors[rows])
        else:
            yield batch, store.vectors_of([item.id for item in batch])


def _state(store, base) -> dict[str, str]:
    """The state values that travel with a catalog (as text, as a directory keeps them)."""
    if isinstance(store, IndexStore):
        found = {key: base.state.get(key) for key in COPIED_STATE}
    else:
        found = {key: store.state(key) for key in COPIED_STATE}
    return {key: value for key, value in found.items() if value is not None}


def _writer(store):
    return store.writer() if not isinstance(store, IndexStore) else store.writer(timeout=60)


def _copy_shoppers(origin, target, known: set[str], summary: ExportSummary) -> None:
    source, destination = shoppers_of(origin), shoppers_of(target)
    for user_id in source.users():
        events = source.events(user_id)
        kept = [event for event in events if event.item_id in known]
        summary.events_of_missing_items += len(events) - len(kept)
        summary.tokens_not_copied += bool(source.export_user(user_id)["user"]["has_token"])
        if not kept:
            continue
        rows = [
            {"item_id": e.item_id, "kind": e.kind, "timestamp": e.timestamp, "weight": e.weight}
            for e in kept
        ]
        destination.add_events(user_id, rows, known_items=known)
        summary.shoppers += 1
        summary.events += len(kept)
