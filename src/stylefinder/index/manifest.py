"""The index's SQLite manifest: its schema and migrations, its connections and transactions, and
the keys of its state table.

The `items` table holds one row per item (id, matrix row, path, hash, metadata, timestamps),
`state` the committed generation's key/values (its matrix file, its vector index entry, counts),
`restore_items` and `restore_state` the restore point (see `stylefinder.index.restore`),
`item_words` the items' words for full-text search (see `stylefinder.index.text_index`).

Example:
    >>> manifest = Manifest(Path("my-index"))  # doctest: +SKIP
    >>> manifest.read(lambda con: con.execute("SELECT COUNT(*) FROM items").fetchone())
    ... # doctest: +SKIP
    (1000,)
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from pathlib import Path

from stylefinder.errors import DamagedIndexError, IndexStateError
from stylefinder.index.header import MANIFEST_FILE, REBUILD_HINT
from stylefinder.index.text_index import TABLE as TEXT_TABLE
from stylefinder.index.text_index import create_text_index
from stylefinder.index.vector_index import entry_files
from stylefinder.io.diskspace import is_no_space, no_space

_READ_MMAP_BYTES = 1 << 30  # of the manifest, for snapshots' item reads

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    row INTEGER NOT NULL UNIQUE,
    path TEXT NOT NULL,
    hash TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    mtime_ns INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}',
    added_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'catalog'
);
CREATE INDEX IF NOT EXISTS items_hash ON items (hash);
"""
# The restore point: the items and state of the generation before the last `index` run (or
# restore), so that one mistaken run can be undone; its data files are kept.
RESTORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS restore_items AS SELECT * FROM items WHERE 0;
CREATE TABLE IF NOT EXISTS restore_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

ANN_KIND_KEY = "ann_kind"  # state: the vector index kind asked for (`stylefinder index --ann`)
ROWS_KEY, COUNT_KEY = "matrix_rows", "item_count"  # state: matrix rows (holes too) and items


class Manifest:
    """The manifest.sqlite of the index at `directory`.

    Reads (`read`) run on one connection that this manifest's users share, one at a time;
    writes (`transaction`) on a connection of their own. SQLite's errors come out as errors
    that say what to do (see `reading`).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / MANIFEST_FILE
        self._reader: sqlite3.Connection | None = None  # shared by the snapshots' reads
        self._reader_lock = threading.Lock()

    def create(self) -> None:
        """Make the tables of an empty index (generation 0, no vectors)."""
        with self.connect() as con:
            con.executescript(SCHEMA + RESTORE_SCHEMA)
            create_text_index(con)
            con.execute("INSERT OR IGNORE INTO state VALUES ('generation', '0')")
            con.execute("INSERT OR IGNORE INTO state VALUES ('vectors', '')")

    def upgrade(self) -> None:
        """Add columns and tables that newer versions of format 1 know about (indexes made
        before them); raise `DamagedIndexError` when the manifest is not a readable database."""
        with self.reading(), contextlib.closing(self.connect()) as con:
            columns = {row[1] for row in con.execute("PRAGMA table_info(items)")}
            if not columns:
                raise sqlite3.DatabaseError("it has no items table")
            if "source" not in columns:
                con.execute("ALTER TABLE items ADD COLUMN source TEXT NOT NULL DEFAULT 'catalog'")
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
            if "restore_state" not in tables:
                con.executescript(RESTORE_SCHEMA)
            if TEXT_TABLE not in tables:  # made before full-text search: filled once
                con.execute("BEGIN IMMEDIATE")
                try:
                    create_text_index(con)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise

    @contextlib.contextmanager
    def reading(self):
        """Turn SQLite's errors on the manifest into errors that say what to do: a full disk
        into `NoSpaceError`, a damaged file into `DamagedIndexError`.

        Example:
            >>> with manifest.reading():  # doctest: +SKIP
            ...     manifest.generation()
        """
        path = self.path
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if is_no_space(exc):
                raise no_space(path) from exc
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise IndexStateError(f"{path} is locked by another process ({exc})") from exc
            hint = REBUILD_HINT.format(directory=self.directory)
            raise DamagedIndexError(
                f"the index at {self.directory} is damaged: {path} cannot be read ({exc}). "
                f"Restore the folder from a backup, or {hint} (shoppers.sqlite is kept)"
            ) from exc

    def generation(self) -> int:
        """The committed generation number (changes with every commit); cheap to call."""
        with self.reading(), contextlib.closing(self.connect()) as con:
            row = con.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def read(self, query):
        """`query(connection)` run in one read transaction of the manifest, on the connection
        this manifest's readers share (one query at a time); returns what `query` returns.

        Example:
            >>> manifest.read(lambda con: con.execute("SELECT COUNT(*) FROM items").fetchone())
            ... # doctest: +SKIP
            (1000,)
        """
        with self.reading(), self._reader_lock:
            if self._reader is None:
                self._reader = self.connect(shared=True)
            con = self._reader
            con.execute("BEGIN")
            try:
                return query(con)
            finally:
                con.execute("COMMIT")

    def close(self) -> None:
        """Close the shared read connection (the next read opens it again)."""
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    @contextlib.contextmanager
    def transaction(self):
        """A connection inside `BEGIN IMMEDIATE`: committed when the block ends, rolled back
        when it raises (SQLite's errors translated as `reading` does).

        Example:
            >>> with manifest.transaction() as con:  # doctest: +SKIP
            ...     con.execute("INSERT OR REPLACE INTO state VALUES ('note', 'kept')")
        """
        with self.reading(), contextlib.closing(self.connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def connect(self, *, shared: bool = False) -> sqlite3.Connection:
        """A connection to the manifest (`shared`: usable from any thread, one at a time)."""
        con = sqlite3.connect(
            self.path,
            timeout=30,
            isolation_level=None,
            check_same_thread=not shared,
        )
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        if shared:  # snapshots' reads: the manifest's pages memory-mapped, not read per query
            con.execute(f"PRAGMA mmap_size={_READ_MMAP_BYTES}")
        return con


def counts(con: sqlite3.Connection, state: dict[str, str]) -> tuple[int, int]:
    """(matrix rows, items) of the generation `state` describes; counted for indexes made
    before the state recorded them (they have no empty rows)."""
    if ROWS_KEY in state and COUNT_KEY in state:
        return int(state[ROWS_KEY]), int(state[COUNT_KEY])
    count, last = con.execute("SELECT COUNT(*), MAX(row) FROM items").fetchone()
    return (0 if last is None else last + 1), count


def ann_entry(text: str) -> dict:
    """The state's `ann` entry (the vector index: kind, files, parameters) as a dict ({} when
    absent or unreadable).

    Example:
        >>> ann_entry('{"kind": "hnsw", "search_width": 48}')["search_width"]
        48
    """
    if not text:
        return {}
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def files_of(state: dict[str, str]) -> set[str]:
    """The data files a committed state refers to.

    Example:
        >>> sorted(files_of({"vectors": "vectors-3.npy", "ann": ""}))
        ['vectors-3.npy']
    """
    names = {state.get("vectors", "")} | entry_files(ann_entry(state.get("ann", "")))
    return names - {""}
