"""The items of one committed generation, read from the manifest when they are asked for.

A snapshot reads the items a query needs (a page of results, one id) instead of every item when
it opens, so a million-item index opens in milliseconds; whole-catalog passes (filters, facets)
read every row once per generation, on first use.

Items are addressed by their matrix row. A removed item leaves its row empty (a hole) until a
writer compacts the matrix, so rows run from 0 to `size` and `len` counts the items. Between
two compactions a row never changes meaning: new items take new rows, a removed or re-embedded
item leaves its row empty, a metadata change keeps the row. So a table whose generation was
replaced still reads right (an item removed since is not found, changed metadata is the newer),
and only after its rows were renumbered does it raise `StaleSnapshotError`. Each read is one
short SQLite transaction: no reader holds the manifest open, and writers' checkpoints proceed.

Example:
    >>> table = snapshot.items  # doctest: +SKIP
    >>> table[12].id, len(table), table.size  # doctest: +SKIP
    ('dress-12', 999, 1000)
    >>> table.row_of.get("dress-12")  # doctest: +SKIP
    12
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from stylefinder.errors import StaleSnapshotError
from stylefinder.types import Item

Reader = Callable[[Callable[[sqlite3.Connection], Any]], Any]  # runs a read in a transaction
LAYOUT_KEY = "layout"  # state: the generation that last renumbered the rows

ITEM_COLUMNS = "id, path, hash, size, mtime_ns, metadata, added_at, updated_at, source"
_CHUNK = 900  # rows asked for in one `IN (...)` query (SQLite allows 999 parameters)


class ItemTable:
    """The items of one generation by matrix row, read on demand with `read` (the store's
    `Manifest.read`: a function running a query function in a read transaction).

    `size` is the number of matrix rows, `len` the number of items (rows minus holes);
    iterating yields the items in row order. `generation` and `layout` are the state's values
    for the generation the table shows.
    """

    def __init__(
        self, read: Reader, *, size: int, count: int, generation: str, layout: str
    ) -> None:
        self._manifest = _RowReader(read, size, generation, layout)
        self.size, self._count = size, count
        self._by_row: list[Item | None] | None = None
        self.row_of = RowLookup(self._manifest, count)  # no reference back: no cycle to collect

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Item]:
        return (item for item in self.by_row() if item is not None)

    def __bool__(self) -> bool:
        return self._count > 0

    def __getitem__(self, row: int | slice) -> Item | list[Item]:
        """The item at matrix `row` (negative: from the end); `KeyError` for an empty row. A
        slice gives the items of those rows, holes left out."""
        if isinstance(row, slice):
            return [item for item in self.by_row()[row] if item is not None]
        row = int(row)
        if row < 0:
            row += self.size
        if not 0 <= row < self.size:
            raise IndexError(f"row {row} is outside the index's {self.size} rows")
        item = self.many([row])[0]
        if item is None:
            raise KeyError(f"row {row} holds no item (removed)")
        return item

    def many(self, rows) -> list[Item | None]:
        """The items at `rows`, in their order (None for an empty row), in few queries.

        Example:
            >>> [item.id for item in snapshot.items.many([3, 1])]  # doctest: +SKIP
            ['dress-3', 'dress-1']
        """
        rows = [int(row) for row in rows]
        if self._by_row is not None:
            return [self._by_row[row] if 0 <= row < self.size else None for row in rows]
        found: dict[int, Item] = {}
        inside = sorted({row for row in rows if 0 <= row < self.size})
        for start in range(0, len(inside), _CHUNK):
            part = inside[start : start + _CHUNK]
            marks = ", ".join("?" * len(part))
            query = f"SELECT row, {ITEM_COLUMNS} FROM items WHERE row IN ({marks})"
            found.update((row[0], item_from_row(row[1:])) for row in self._query(query, part))
        return [found.get(row) for row in rows]

    def by_row(self) -> list[Item | None]:
        """Every row's item (None for an empty row), read once in one pass and kept."""
        if self._by_row is None:
            listed: list[Item | None] = [None] * self.size
            for row in self.manifest_rows():
                listed[row[0]] = item_from_row(row[1:])
            self._by_row = self.row_of.listed = listed
        return self._by_row

    def rows(self) -> np.ndarray:
        """The rows that hold an item, ascending."""
        if self._by_row is not None:
            return np.flatnonzero([item is not None for item in self._by_row])
        found = self._query("SELECT row FROM items WHERE row < ? ORDER BY row", [self.size])
        return np.fromiter((row[0] for row in found), np.int64, count=len(found))

    def rows_with_hash(self, digest: str) -> list[int]:
        """The rows of items whose image has content hash `digest`."""
        query = "SELECT row FROM items WHERE hash = ? AND row < ?"
        return [row[0] for row in self._query(query, [digest, self.size])]

    def manifest_rows(self) -> list[tuple]:
        """Every item as (row, *ITEM_COLUMNS) tuples in row order: what a writer copies."""
        query = f"SELECT row, {ITEM_COLUMNS} FROM items WHERE row < ? ORDER BY row"
        return self._query(query, [self.size])

    def _query(self, sql: str, parameters=()) -> list[tuple]:
        return self._manifest.query(sql, parameters)


class _RowReader:
    """Reads of one generation's item rows (what `ItemTable` and `RowLookup` share)."""

    def __init__(self, read: Reader, size: int, generation: str, layout: str) -> None:
        self._read, self.size = read, size
        self._generation, self._layout = generation, layout

    def query(self, sql: str, parameters=()) -> list[tuple]:
        """The rows `sql` selects; `StaleSnapshotError` once the rows were renumbered."""

        def run(con: sqlite3.Connection) -> list[tuple]:
            found = con.execute("SELECT value FROM state WHERE key = ?", (LAYOUT_KEY,)).fetchone()
            layout = found[0] if found else ""
            if layout != self._layout:  # only a commit that renumbers the rows changes it
                raise StaleSnapshotError(
                    f"the index's rows were renumbered (generation {layout}) since this "
                    f"snapshot (generation {self._generation}) was read; read a new snapshot "
                    "and ask again"
                )
            return con.execute(sql, parameters).fetchall()

        return self._read(run)


class RowLookup(Mapping):
    """Item id -> matrix row for one `ItemTable`: single lookups query the manifest's primary
    key; after many (a writer staging a whole catalog) every id is read into a dict at once.

    Example:
        >>> snapshot.row_of.get("dress-12"), "nope" in snapshot.row_of  # doctest: +SKIP
        (12, False)
    """

    _QUERIES_BEFORE_DICT = 20_000

    def __init__(self, manifest: _RowReader, count: int) -> None:
        self._manifest, self._count = manifest, count
        self._queries = 0
        self._all: dict[str, int] | None = None
        self.listed: list[Item | None] | None = None  # the table's items by row, once read

    def __getitem__(self, item_id: str) -> int:
        found = self.get(item_id)
        if found is None:
            raise KeyError(item_id)
        return found

    def get(self, item_id, default=None):
        if self._all is None and self._queries < self._QUERIES_BEFORE_DICT:
            self._queries += 1
            query = "SELECT row FROM items WHERE id = ? AND row < ?"
            found = self._manifest.query(query, [str(item_id), self._manifest.size])
            return found[0][0] if found else default
        return self.as_dict().get(item_id, default)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self.get(item_id) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return self._count

    def as_dict(self) -> dict[str, int]:
        """Every id and its row (read once and kept)."""
        if self._all is None:
            listed = self.listed
            if listed is not None:
                self._all = {item.id: row for row, item in enumerate(listed) if item is not None}
            else:
                query = "SELECT id, row FROM items WHERE row < ? ORDER BY row"
                self._all = dict(self._manifest.query(query, [self._manifest.size]))
        return self._all


def item_to_row(item: Item, now: str) -> tuple:
    """`item` as the manifest's ITEM_COLUMNS (`now` for timestamps it lacks)."""
    metadata = json.dumps(item.metadata, ensure_ascii=False, sort_keys=True)
    added = item.added_at or now
    return (
        item.id,
        item.path,
        item.hash,
        item.size,
        item.mtime_ns,
        metadata,
        added,
        item.updated_at or added,
        item.source,
    )


def item_from_row(row: tuple) -> Item:
    """The item of a manifest row (ITEM_COLUMNS); its metadata is parsed on first use."""
    item_id, path, digest, size, mtime_ns, metadata, added_at, updated_at, source = row
    return Item(
        item_id,
        path,
        digest,
        size,
        mtime_ns,
        None,
        added_at,
        updated_at,
        source,
        metadata_json=metadata,
    )
