"""The restore point: the generation saved before the last `index` run, which `stylefinder
restore` brings back (and a second restore undoes the first).

Its items and state are copies in the manifest (`restore_items`, `restore_state`); its data
files are kept on disk while it is the restore point.

Example:
    >>> point = read_restore_point(manifest)  # doctest: +SKIP
    >>> point.generation, point.items  # doctest: +SKIP
    (4, 1000)
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field

from stylefinder.errors import IndexStateError
from stylefinder.index.header import utc_now
from stylefinder.index.items import ITEM_COLUMNS, LAYOUT_KEY
from stylefinder.index.manifest import COUNT_KEY, ROWS_KEY, Manifest
from stylefinder.index.matrix import load_vectors
from stylefinder.index.snapshot import Snapshot

_CATALOG_STATE = ("vectors", "ann", "catalog_root", ROWS_KEY, COUNT_KEY)  # what restore brings


@dataclass(frozen=True)
class RestorePoint:
    """The generation saved before the last `index` run: what `stylefinder restore` brings back."""

    generation: int
    items: int
    saved_at: str
    updated_at: str
    state: dict[str, str] = field(repr=False, default_factory=dict)
    rows: int = 0  # its matrix rows (items plus empty rows)


def read_restore_point(manifest: Manifest) -> RestorePoint | None:
    """The restore point saved in `manifest`, or None when there is none.

    Example:
        >>> read_restore_point(manifest)  # doctest: +SKIP
        RestorePoint(generation=4, items=1000, saved_at='2026-12-01T10:00:00+00:00', ...)
    """
    with manifest.reading(), contextlib.closing(manifest.connect()) as con:
        state = dict(con.execute("SELECT key, value FROM restore_state"))
    if "generation" not in state:
        return None
    items = int(state.get(COUNT_KEY, 0))
    return RestorePoint(
        generation=int(state["generation"]),
        items=items,
        saved_at=state.get("saved_at", ""),
        updated_at=state.get("updated_at", ""),
        state=state,
        rows=int(state.get(ROWS_KEY, items)),
    )


def save_restore_point(
    con: sqlite3.Connection, base: Snapshot, *, items_table: str = "items"
) -> RestorePoint:
    """Within `con`'s open transaction, save `base` (the committed generation whose rows are
    in `items_table`) as the restore point; returns it.

    Example:
        >>> with manifest.transaction() as con:  # doctest: +SKIP
        ...     point = save_restore_point(con, snapshot)
    """
    columns = f"row, {ITEM_COLUMNS}"
    con.execute("DELETE FROM restore_items")
    con.execute(f"INSERT INTO restore_items ({columns}) SELECT {columns} FROM {items_table}")
    state = {**base.state, COUNT_KEY: str(len(base)), ROWS_KEY: str(base.size)}
    state["saved_at"] = utc_now()
    state.setdefault("generation", str(base.generation))
    con.execute("DELETE FROM restore_state")
    con.executemany("INSERT INTO restore_state VALUES (?, ?)", state.items())
    generation, saved_at, updated_at = (
        int(state["generation"]),
        state["saved_at"],
        state.get("updated_at", ""),
    )
    return RestorePoint(generation, len(base), saved_at, updated_at, state, base.size)


def restore_generation(
    manifest: Manifest, dim: int, point: RestorePoint | None, base: Snapshot
) -> tuple[int, RestorePoint]:
    """Commit `point`'s items, vectors and catalog folder as the generation after `base`
    (the committed one, `dim`-dimensional vectors), and save `base` as the new restore point.
    Returns (the new generation number, the new restore point).

    Example:
        >>> generation, point = restore_generation(manifest, 1280, point, base)  # doctest: +SKIP
    """
    if point is None:
        raise IndexStateError(
            f"{manifest.directory} has no earlier generation to restore (one is kept "
            "from the second `stylefinder index` run on)"
        )
    saved = point.state
    if point.rows:  # its matrix still on disk?
        load_vectors(manifest.directory, saved.get("vectors", ""), point.rows, dim)
    generation = base.generation + 1
    state = {key: saved[key] for key in _CATALOG_STATE if key in saved}
    state.update(generation=str(generation), matrix_generation=str(generation))
    state.update(updated_at=utc_now(), **{LAYOUT_KEY: str(generation)})
    columns = f"row, {ITEM_COLUMNS}"
    with manifest.transaction() as con:
        con.execute(f"CREATE TEMP TABLE undone AS SELECT {columns} FROM items")
        con.execute("DELETE FROM items")
        con.execute(f"INSERT INTO items ({columns}) SELECT {columns} FROM restore_items")
        replaced = save_restore_point(con, base, items_table="temp.undone")
        con.execute("DROP TABLE temp.undone")
        for key in _CATALOG_STATE:
            con.execute("DELETE FROM state WHERE key = ?", (key,))
        con.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", state.items())
    return generation, replaced
