"""The index directory: a JSON header, an SQLite manifest and a memory-mapped vector matrix.

Layout of INDEX_DIR:

    header.json          backbone, pooling, dim, weights fingerprint, package version (immutable)
    manifest.sqlite      items (id, row, path, hash, metadata, timestamps) and state
    vectors-<gen>.npy    float32 (N, dim); row i belongs to the item whose `row` is i (a removed
                         item's row stays, empty, until a commit compacts the matrix)
    ann-<gen>-graph.faiss  indexes of 20k+ rows: a faiss HNSW graph over int8 codes of the rows
    ann-<gen>-labels.npy   int64: the row each graph node holds (-1: removed)
    .lock                writers hold an exclusive lock on it

A commit writes the new matrix (and codes) to new files, then switches the manifest to them in
one SQLite transaction. Killing a writer at any moment therefore leaves the last committed
generation loadable, and readers never see a manifest and a matrix that disagree. The state key
`ann` (JSON) names the vector index files with the parameters chosen and the recall measured
(see `stylefinder.index.vector_index`); indexes without it are searched exactly. The state
also counts the matrix rows and the items (`matrix_rows`, `item_count`), so that opening reads
no item row: snapshots read items when asked (`stylefinder.index.items`).

Example:
    >>> store = IndexStore.open("my-index")  # doctest: +SKIP
    >>> snapshot = store.snapshot()  # doctest: +SKIP
    >>> len(snapshot), snapshot.vectors.shape  # doctest: +SKIP
    (1000, (1000, 1280))
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from stylefinder._version import __version__
from stylefinder.errors import DamagedIndexError, IndexStateError, UnknownItemError
from stylefinder.index.hnsw import carry_graph
from stylefinder.index.items import ITEM_COLUMNS, LAYOUT_KEY, ItemTable, RowLookup, item_to_row
from stylefinder.index.kinds import build_vector_index, load_vector_index
from stylefinder.index.vector_index import (
    DEFAULT_ANN,
    AnnSettings,
    ExactIndex,
    VectorIndex,
    entry_files,
)
from stylefinder.io.diskspace import is_no_space, no_space, reserve
from stylefinder.io.files import atomic_write, load_npy, write_npy
from stylefinder.types import EmbeddingSpace, Item

log = logging.getLogger(__name__)

FORMAT = 1
HEADER_FILE = "header.json"
MANIFEST_FILE = "manifest.sqlite"
LOCK_FILE = ".lock"
_COPY_ROWS = 65_536  # rows copied per step when writing a new matrix
_READ_MMAP_BYTES = 1 << 30  # of the manifest, for snapshots' item reads
MIN_SPARE_ROWS = 1024  # a new matrix file has room for this many more rows (or a quarter more)

_SCHEMA = """
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
_RESTORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS restore_items AS SELECT * FROM items WHERE 0;
CREATE TABLE IF NOT EXISTS restore_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
ANN_KIND_KEY = "ann_kind"  # state: the vector index kind asked for (`stylefinder index --ann`)
_DATA_PREFIXES = ("vectors-", "ann-", "coarse-")  # coarse-: two-stage files of older versions
_DATA_SUFFIXES = (".npy", ".npz", ".faiss")
ROWS_KEY, COUNT_KEY = "matrix_rows", "item_count"  # state: matrix rows (holes too) and items
MAX_HOLE_SHARE = 0.2  # removed items' empty rows kept in the matrix until they pass this share
_CATALOG_STATE = ("vectors", "ann", "catalog_root", ROWS_KEY, COUNT_KEY)  # what restore brings
_REBUILD_HINT = "rebuild it with `stylefinder index CATALOG_DIR --index {directory} --rebuild`"
_PLACEHOLDERS = ", ".join("?" * (1 + len(ITEM_COLUMNS.split(","))))  # row + item columns


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class IndexHeader:
    """The immutable facts of an index, stored as header.json."""

    backbone: str
    pooling: str
    dim: int
    weights_fingerprint: str
    version: str
    created_at: str
    format: int = FORMAT
    precision: str = "fp32"

    @property
    def space(self) -> EmbeddingSpace:
        return EmbeddingSpace(
            self.backbone, self.pooling, self.weights_fingerprint, self.dim, self.precision
        )

    @classmethod
    def for_space(cls, space: EmbeddingSpace) -> IndexHeader:
        return cls(
            backbone=space.backbone,
            pooling=space.pooling,
            dim=space.dim,
            weights_fingerprint=space.weights_fingerprint,
            version=__version__,
            created_at=utc_now(),
            precision=space.precision,
        )


@dataclass(frozen=True)
class Snapshot:
    """A consistent view of one committed generation: its items by matrix row (read on demand,
    see `stylefinder.index.items`), its vectors and its vector index.

    `size` counts the matrix rows, `len` the items: a removed item leaves an empty row (a hole,
    excluded by the vector index) until a commit compacts the matrix.
    """

    header: IndexHeader
    generation: int
    items: ItemTable
    vectors: np.ndarray
    state: dict[str, str]
    index: VectorIndex | None = field(default=None, repr=False)  # searches `vectors`

    def __len__(self) -> int:
        return len(self.items)

    @property
    def size(self) -> int:
        """The number of matrix rows (items plus holes)."""
        return self.items.size

    @property
    def row_of(self) -> RowLookup:
        """Item id -> matrix row."""
        return self.items.row_of

    @property
    def catalog_root(self) -> str | None:
        return self.state.get("catalog_root")


@dataclass(frozen=True)
class RestorePoint:
    """The generation saved before the last `index` run: what `stylefinder restore` brings back."""

    generation: int
    items: int
    saved_at: str
    updated_at: str
    state: dict[str, str] = field(repr=False, default_factory=dict)
    rows: int = 0  # its matrix rows (items plus empty rows)


class IndexStore:
    """An index directory on disk. `create` makes one, `open` checks and opens one."""

    def __init__(self, directory: str | Path, header: IndexHeader) -> None:
        self.directory = Path(directory)
        self.header = header
        self._reader: sqlite3.Connection | None = None  # shared by this store's snapshots
        self._reader_lock = threading.Lock()

    # -- opening ---------------------------------------------------------------------------------

    @staticmethod
    def exists(directory: str | Path) -> bool:
        """True when `directory` holds an index (its header file)."""
        return (Path(directory) / HEADER_FILE).is_file()

    @classmethod
    def open(cls, directory: str | Path) -> IndexStore:
        """Open an existing index, or raise `IndexStateError` saying what is wrong."""
        directory = Path(directory)
        header_path = directory / HEADER_FILE
        if not header_path.is_file():
            raise IndexStateError(
                f"no index at {directory} (missing {HEADER_FILE}); build one with "
                f"`stylefinder index CATALOG_DIR --index {directory}`"
            )
        try:
            raw = json.loads(header_path.read_text(encoding="utf-8"))
            header = IndexHeader(**raw)
        except (ValueError, TypeError) as exc:
            hint = _REBUILD_HINT.format(directory=directory)
            raise DamagedIndexError(f"{header_path} is damaged ({exc}); {hint}") from exc
        if header.format > FORMAT:
            raise IndexStateError(
                f"{directory} uses index format {header.format}; this stylefinder reads "
                f"format {FORMAT} at most. Upgrade stylefinder."
            )
        if not (directory / MANIFEST_FILE).is_file():
            hint = _REBUILD_HINT.format(directory=directory)
            raise DamagedIndexError(f"{directory} is damaged: {MANIFEST_FILE} is missing; {hint}")
        store = cls(directory, header)
        store._upgrade_schema()
        return store

    def _upgrade_schema(self) -> None:
        """Add columns and tables that newer versions of format 1 know about (indexes made
        before them); raise `DamagedIndexError` when the manifest is not a readable database."""
        with self.reading(), contextlib.closing(self._connect()) as con:
            columns = {row[1] for row in con.execute("PRAGMA table_info(items)")}
            if not columns:
                raise sqlite3.DatabaseError("it has no items table")
            if "source" not in columns:
                con.execute("ALTER TABLE items ADD COLUMN source TEXT NOT NULL DEFAULT 'catalog'")
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
            if "restore_state" not in tables:
                con.executescript(_RESTORE_SCHEMA)

    @contextlib.contextmanager
    def reading(self):
        """Turn SQLite's errors on the manifest into errors that say what to do: a full disk
        into `NoSpaceError`, a damaged file into `DamagedIndexError`.

        Example:
            >>> with store.reading():  # doctest: +SKIP
            ...     store.generation()
        """
        path = self.directory / MANIFEST_FILE
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if is_no_space(exc):
                raise no_space(path) from exc
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise IndexStateError(f"{path} is locked by another process ({exc})") from exc
            hint = _REBUILD_HINT.format(directory=self.directory)
            raise DamagedIndexError(
                f"the index at {self.directory} is damaged: {path} cannot be read ({exc}). "
                f"Restore the folder from a backup, or {hint} (shoppers.sqlite is kept)"
            ) from exc

    @classmethod
    def create(cls, directory: str | Path, space: EmbeddingSpace) -> IndexStore:
        """Create an empty index for vectors of `space` (the directory may exist, empty or not)."""
        directory = Path(directory)
        if cls.exists(directory):
            raise IndexStateError(f"an index already exists at {directory}")
        directory.mkdir(parents=True, exist_ok=True)
        header = IndexHeader.for_space(space)
        store = cls(directory, header)
        with store._connect() as con:
            con.executescript(_SCHEMA + _RESTORE_SCHEMA)
            con.execute("INSERT OR IGNORE INTO state VALUES ('generation', '0')")
            con.execute("INSERT OR IGNORE INTO state VALUES ('vectors', '')")
        text = json.dumps(asdict(header), indent=2) + "\n"
        atomic_write(directory / HEADER_FILE, text.encode("utf-8"))
        return store

    @classmethod
    def open_or_create(cls, directory: str | Path, space: EmbeddingSpace) -> IndexStore:
        """Open the index at `directory` if there is one (it must match `space`), else create it."""
        if not cls.exists(directory):
            return cls.create(directory, space)
        store = cls.open(directory)
        store.check_space(space)
        return store

    def check_space(self, space: EmbeddingSpace) -> None:
        """Raise `IndexStateError` unless vectors of `space` are comparable with this index's."""
        if space != self.header.space:
            raise IndexStateError(
                f"the index at {self.directory} was built with {self.header.space.describe()}, "
                f"but the query uses {space.describe()}. Use the same backbone and pooling, or "
                "build a new index in another directory."
            )

    # -- reading ---------------------------------------------------------------------------------

    def generation(self) -> int:
        """The committed generation number (changes with every commit); cheap to call."""
        with self.reading(), contextlib.closing(self._connect()) as con:
            row = con.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def restore_point(self) -> RestorePoint | None:
        """The generation `stylefinder restore` would bring back, or None when there is none.

        Example:
            >>> store.restore_point()  # doctest: +SKIP
            RestorePoint(generation=4, items=1000, saved_at='2026-12-01T10:00:00+00:00', ...)
        """
        with self.reading(), contextlib.closing(self._connect()) as con:
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

    def snapshot(self, previous: Snapshot | None = None) -> Snapshot:
        """Read the committed generation: its state, a read-only memory map of the vectors and
        the vector index; items are read when asked for (`Snapshot.items`).

        With `previous` (an earlier snapshot of this index), an unchanged generation returns it
        as it is.
        """
        return self._read_snapshot(previous)

    def _read_snapshot(
        self, previous: Snapshot | None = None, fresh: tuple[str, VectorIndex] | None = None
    ) -> Snapshot:
        """`snapshot`; `fresh` (the state's `ann` entry and the index a writer just saved for
        it) spares loading that index again."""

        def read_state(con: sqlite3.Connection) -> tuple[dict[str, str], tuple[int, int] | None]:
            state = dict(con.execute("SELECT key, value FROM state"))
            unchanged = previous is not None and previous.state == state
            return state, None if unchanged else _counts(con, state)

        for _attempt in range(10):
            state, counts = self.read(read_state)
            if counts is None:  # the generation of `previous`
                return previous
            size, count = counts
            try:
                vectors = self._load_vectors(state.get("vectors", ""), size)
                table = ItemTable(
                    self.read,
                    size=size,
                    count=count,
                    generation=state.get("generation", "0"),
                    layout=state.get(LAYOUT_KEY, ""),
                )
                if fresh is not None and fresh[0] == state.get("ann") and fresh[1].size == size:
                    index = fresh[1]
                    index.bind(vectors)
                else:
                    index = self._load_index(state, vectors, table)
            except FileNotFoundError:  # a writer replaced that generation meanwhile: read again
                time.sleep(0.01)
                continue
            generation = int(state.get("generation", 0))
            return Snapshot(self.header, generation, table, vectors, state, index)
        hint = _REBUILD_HINT.format(directory=self.directory)
        raise IndexStateError(
            f"{self.directory}: the vector file named by the manifest keeps disappearing while "
            "it is read (another process replaces it faster than this one can open it, or the "
            "folder is being deleted or synced). Stop other writers and try again; if no other "
            f"process writes, the index is damaged: {hint}"
        )

    def read(self, query):
        """`query(connection)` run in one read transaction of the manifest, on a connection
        this store's snapshots share (one query at a time); returns what `query` returns.

        Example:
            >>> store.read(lambda con: con.execute("SELECT COUNT(*) FROM items").fetchone())
            ... # doctest: +SKIP
            (1000,)
        """
        with self.reading(), self._reader_lock:
            if self._reader is None:
                self._reader = self._connect(shared=True)
            con = self._reader
            con.execute("BEGIN")
            try:
                return query(con)
            finally:
                con.execute("COMMIT")

    def _load_vectors(self, name: str, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros((0, self.header.dim), np.float32)
        if not name:
            raise IndexStateError(f"{self.directory} is damaged: items without a vector file")
        try:
            vectors = load_npy(self.directory / name, mmap_mode="r")
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise IndexStateError(f"{self.directory / name} is damaged ({exc})") from exc
        if vectors.ndim == 2 and vectors.shape[0] >= count:  # rows past `count`: spare room
            vectors = vectors[:count]
        if vectors.shape != (count, self.header.dim) or vectors.dtype != np.float32:
            raise IndexStateError(
                f"{self.directory / name} is damaged: shape {vectors.shape} {vectors.dtype}, "
                f"expected ({count}, {self.header.dim}) float32"
            )
        return vectors

    def _load_index(
        self, state: dict[str, str], vectors: np.ndarray, table: ItemTable
    ) -> VectorIndex:
        """The vector index named by the state's `ann` entry, memory-mapped; exact search when
        there is none, or when its files are damaged or it was built for another matrix
        (slower, but right: the empty rows are read from the manifest; the next commit builds
        the index again)."""
        entry = ann_entry(state.get("ann", ""))
        if not entry or not len(vectors):
            return ExactIndex(vectors)
        if entry.get("matrix") != state.get("vectors"):
            log.warning(
                "%s: the vector index was built for another matrix; searching exactly",
                self.directory,
            )
            return _exact_over(vectors, table)
        try:
            return load_vector_index(self.directory, entry, vectors)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, IndexStateError) as exc:
            log.warning("%s: vector index unreadable (%s); searching exactly", self.directory, exc)
            return _exact_over(vectors, table)

    # -- writing ---------------------------------------------------------------------------------

    def writer(
        self,
        *,
        timeout: float = 60.0,
        ann: AnnSettings | None = None,
        previous: Snapshot | None = None,
        keep_restore_point: bool = False,
        progress: bool = False,
    ) -> IndexWriter:
        """A writer holding the index's exclusive lock; use it as a context manager.

        `ann` says which vector index commits build (default: the kind the index was last
        built with, `stylefinder index --ann`, else "auto"); a progress bar shows while a graph
        is built when `progress`. `previous`,
        a recent snapshot of this index, spares re-reading what did not change (see `snapshot`).
        With `keep_restore_point`, the writer's first commit saves the generation it started
        from as the restore point (see `IndexWriter.restore`).
        """
        return IndexWriter(
            self,
            timeout=timeout,
            ann=ann,
            previous=previous,
            keep_restore_point=keep_restore_point,
            progress=progress,
        )

    @contextlib.contextmanager
    def _transaction(self):
        """A connection inside `BEGIN IMMEDIATE`: committed when the block ends, rolled back
        when it raises (SQLite's errors translated as `reading` does)."""
        with self.reading(), contextlib.closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _connect(self, *, shared: bool = False) -> sqlite3.Connection:
        """A connection to the manifest (`shared`: usable from any thread, one at a time)."""
        con = sqlite3.connect(
            self.directory / MANIFEST_FILE,
            timeout=30,
            isolation_level=None,
            check_same_thread=not shared,
        )
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        if shared:  # snapshots' reads: the manifest's pages memory-mapped, not read per query
            con.execute(f"PRAGMA mmap_size={_READ_MMAP_BYTES}")
        return con


class IndexWriter:
    """Stages additions, replacements and removals, and commits them atomically.

    Example:
        >>> with store.writer() as writer:  # doctest: +SKIP
        ...     writer.put(item, vector)
        ...     writer.remove("old-id")
        ...     writer.commit()  # also done on a clean exit; an exception discards staged work
    """

    def __init__(
        self,
        store: IndexStore,
        *,
        timeout: float,
        ann: AnnSettings | None = None,
        previous: Snapshot | None = None,
        keep_restore_point: bool = False,
        progress: bool = False,
    ) -> None:
        self.store = store
        self.timeout = timeout
        self._chosen_ann = ann
        self.ann = ann or DEFAULT_ANN
        self.progress = progress
        self.rebuild_index = False  # set: the next commit builds the vector index afresh
        self._fresh_index: tuple[str, VectorIndex] | None = None  # (state entry, its index)
        self._save_restore_point = keep_restore_point
        self._restore: RestorePoint | None = None
        self._lock_fd: int | None = None
        self._base: Snapshot | None = previous  # read again under the lock on entry
        self._puts: dict[str, tuple[Item, np.ndarray | None]] = {}
        self._removals: set[str] = set()
        self._state_updates: dict[str, str] = {}

    def __enter__(self) -> IndexWriter:
        self._lock()
        try:
            self._base = self.store.snapshot(previous=self._base)
            self._restore = self.store.restore_point()
            if self._chosen_ann is None:  # the kind this index was built with
                self.ann = AnnSettings(kind=self._base.state.get(ANN_KIND_KEY, "auto"))
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self._unlock()

    @property
    def base(self) -> Snapshot:
        """The last committed snapshot (staged changes are not in it)."""
        if self._base is None:
            raise RuntimeError("use IndexWriter as a context manager")
        return self._base

    @property
    def staged(self) -> int:
        """How many changes wait for the next commit."""
        return len(self._puts) + len(self._removals)

    def put(self, item: Item, vector: np.ndarray | None) -> None:
        """Add or replace `item`; `vector=None` keeps the vector the item already has."""
        if vector is None and item.id not in self._puts and item.id not in self.base.row_of:
            raise UnknownItemError(f"item {item.id!r} has no vector yet")
        if vector is not None:
            vector = np.asarray(vector, np.float32).reshape(-1)
            if vector.shape != (self.store.header.dim,) or not np.isfinite(vector).all():
                raise ValueError(
                    f"vector for {item.id!r} must be {self.store.header.dim} finite floats"
                )
        elif item.id in self._puts:
            vector = self._puts[item.id][1]
        self._removals.discard(item.id)
        self._puts[item.id] = (item, vector)

    def remove(self, item_id: str) -> None:
        """Remove an item (staged until commit); unknown ids raise `UnknownItemError`."""
        if item_id not in self.base.row_of and item_id not in self._puts:
            raise UnknownItemError(f"no item {item_id!r} in the index")
        self._puts.pop(item_id, None)
        if item_id in self.base.row_of:
            self._removals.add(item_id)

    def set_state(self, key: str, value: str) -> None:
        """Record a key/value in the manifest's state table (committed with the next commit)."""
        self._state_updates[key] = value

    def commit(self) -> int:
        """Write staged changes as a new generation; returns the generation number.

        Every kept item keeps its row: metadata changes rewrite only their manifest rows, new
        vectors go after the last row (into the matrix file's spare rows when it has room), and
        a removed or re-embedded item leaves its row empty, excluded by the vector index. When
        empty rows pass `MAX_HOLE_SHARE` of the matrix, the commit compacts it and renumbers
        the rows.
        """
        base = self.base
        reindex = self.rebuild_index or (
            self._chosen_ann is not None
            and self._chosen_ann.kind != base.state.get(ANN_KIND_KEY, "auto")
        )
        if not self._puts and not self._removals and not self._state_updates and not reindex:
            return base.generation
        row_of = base.row_of
        generation = base.generation + 1
        state = {"generation": str(generation), "updated_at": utc_now()}
        updated = {  # same vector: changed in place
            item_id: item
            for item_id, (item, vector) in self._puts.items()
            if vector is None and item_id in row_of
        }
        added = [(item, v) for item_id, (item, v) in self._puts.items() if item_id not in updated]
        leaving = self._removals | {item.id for item, _ in added}  # removed or re-embedded
        emptied = {i: row for i in leaving if (row := row_of.get(i)) is not None}
        size = base.size + len(added)
        count = len(base) - len(emptied) + len(added)
        compact = size - count > MAX_HOLE_SHARE * size
        kept_rows: list[int] | range = range(base.size)
        now = state["updated_at"]
        new_rows = [item_to_row(item, now) for item, _ in added]
        changed = {row_of[i]: item_to_row(item, now) for i, item in updated.items()}
        if compact:  # the items kept, renumbered from 0, then the new ones
            gone = set(emptied.values())
            manifest = [row for row in base.items.manifest_rows() if row[0] not in gone]
            kept_rows = [row[0] for row in manifest]
            written = [(at, *changed.get(row[0], row[1:])) for at, row in enumerate(manifest)]
            written += [(len(manifest) + n, *row) for n, row in enumerate(new_rows)]
            size = count
        else:  # rows stay; the updated ones and the new ones are written
            written = [(row, *values) for row, values in changed.items()]
            written += [(base.size + n, *row) for n, row in enumerate(new_rows)]
        if added or emptied or compact:
            vectors = [vector for _, vector in added]
            name = base.state.get("vectors", "")
            if compact or not self._append_in_place(name, vectors):
                name = f"vectors-{generation}.npy"
                self._write_matrix(name, kept_rows, vectors)
            emptied_rows = [] if compact else sorted(emptied.values())
            ann = {}
            if size:
                ann = self._write_index(generation, name, kept_rows, size, count, emptied_rows)
            state["vectors"] = name if size else ""
            state["ann"] = json.dumps(ann, sort_keys=True) if ann else ""
            if added or compact:  # the matrix's rows changed (not only which hold an item)
                state["matrix_generation"] = str(generation)
        elif reindex and size:  # same rows, another vector index asked for
            ann = self._write_index(generation, base.state["vectors"], kept_rows, size, count, [])
            state["ann"] = json.dumps(ann, sort_keys=True) if ann else ""
        state[ROWS_KEY], state[COUNT_KEY] = str(size), str(count)
        if compact:
            state[LAYOUT_KEY] = str(generation)  # readers of earlier rows must read again
        if self._chosen_ann is not None:
            state[ANN_KIND_KEY] = self._chosen_ann.kind
        state.update(self._state_updates)
        with self.store._transaction() as con:
            if self._save_restore_point:
                self._restore = _save_restore_point(con, base)
            if compact:  # rows renumbered: the manifest is written again
                con.execute("DELETE FROM items")
            else:
                gone = [*emptied, *updated]
                con.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in gone])
            con.executemany(
                f"INSERT INTO items (row, {ITEM_COLUMNS}) VALUES ({_PLACEHOLDERS})", written
            )
            con.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", state.items())
        self._discard_staged()
        self._save_restore_point = False  # one restore point per writer: where it started
        fresh, self._fresh_index = self._fresh_index, None
        self._base = self.store._read_snapshot(fresh=fresh)
        self._clean(keep=_files_of(self._base.state) | _files_of(base.state) | self._kept())
        return generation

    def restore(self) -> int:
        """Bring back the restore point's items, vectors and catalog folder as a new generation,
        and keep the generation it replaces as the new restore point (a second restore undoes
        the first). Staged changes are discarded. Returns the new generation number.

        Example:
            >>> with store.writer() as writer:  # doctest: +SKIP
            ...     writer.restore()
        """
        point, base = self._restore, self.base
        if point is None:
            raise IndexStateError(
                f"{self.store.directory} has no earlier generation to restore (one is kept "
                "from the second `stylefinder index` run on)"
            )
        saved = point.state
        if point.rows:
            self.store._load_vectors(saved.get("vectors", ""), point.rows)  # still on disk?
        generation = base.generation + 1
        state = {key: saved[key] for key in _CATALOG_STATE if key in saved}
        state.update(generation=str(generation), matrix_generation=str(generation))
        state.update(updated_at=utc_now(), **{LAYOUT_KEY: str(generation)})
        columns = f"row, {ITEM_COLUMNS}"
        with self.store._transaction() as con:
            con.execute(f"CREATE TEMP TABLE undone AS SELECT {columns} FROM items")
            con.execute("DELETE FROM items")
            con.execute(f"INSERT INTO items ({columns}) SELECT {columns} FROM restore_items")
            self._restore = _save_restore_point(con, base, items_table="temp.undone")
            con.execute("DROP TABLE temp.undone")
            for key in _CATALOG_STATE:
                con.execute("DELETE FROM state WHERE key = ?", (key,))
            con.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", state.items())
        self._discard_staged()
        self._base = self.store.snapshot()
        self._clean(keep=_files_of(self._base.state) | self._kept())
        return generation

    def _discard_staged(self) -> None:
        self._puts.clear()
        self._removals.clear()
        self._state_updates = {}

    def _kept(self) -> set[str]:
        """The data files of the restore point, kept while it is."""
        return _files_of(self._restore.state) if self._restore is not None else set()

    def _restore_rows(self, name: str) -> int:
        """How many rows of matrix file `name` the restore point reads (0: none)."""
        point = self._restore
        return point.rows if point is not None and point.state.get("vectors") == name else 0

    def _write_matrix(
        self, name: str, kept_rows: list[int] | range, added: list[np.ndarray]
    ) -> None:
        """Write the matrix `name`: the base's `kept_rows`, then the `added` vectors."""
        total = len(kept_rows) + len(added)
        if total == 0:
            return

        def fill(out: np.ndarray) -> None:
            old = self.base.vectors
            kept = np.asarray(kept_rows, dtype=np.int64)
            for start in range(0, len(kept), _COPY_ROWS):
                part = kept[start : start + _COPY_ROWS]
                if len(part) and part[-1] - part[0] == len(part) - 1:  # a run: one slice
                    out[start : start + len(part)] = old[part[0] : part[-1] + 1]
                else:
                    out[start : start + len(part)] = old[part]
            for offset, vector in enumerate(added, start=len(kept)):
                out[offset] = vector

        spare = max(MIN_SPARE_ROWS, total // 4)  # unwritten: takes no disk space until used
        shape = (total + spare, self.store.header.dim)
        write_npy(self.store.directory / name, shape, fill, filled_rows=total)

    def _append_in_place(self, name: str, vectors: list[np.ndarray]) -> bool:
        """Write `vectors` into the spare rows after the base's rows in its matrix file `name`;
        False when there is no such file or too little room. Readers of earlier generations
        read only the rows before, and until the commit the new rows are not part of any."""
        count = self.base.size
        if not name or not count:
            return False
        if not vectors:  # only rows emptied: the matrix stays as it is
            return True
        path = self.store.directory / name
        try:
            matrix = load_npy(path, mmap_mode="r+")
        except (OSError, ValueError):
            return False
        if matrix.ndim != 2 or matrix.shape[0] < count + len(vectors):
            return False
        if self._restore_rows(name) > count:  # those spare rows belong to the restore point
            return False
        row_bytes = matrix.shape[1] * matrix.itemsize
        reserve(path, offset=matrix.offset + count * row_bytes, nbytes=len(vectors) * row_bytes)
        matrix[count : count + len(vectors)] = np.asarray(vectors, np.float32)
        matrix.flush()
        del matrix
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        return True

    def _write_index(
        self,
        generation: int,
        name: str,
        kept_rows: list[int] | range,
        size: int,
        count: int,
        emptied: list[int],
    ) -> dict:
        """Write the vector index for the new matrix `name` (`size` rows, `count` items): row i
        was the base's row `kept_rows[i]`, rows after those are new, and rows `emptied` lost
        their item. Returns its state entry ({}: exact search without empty rows, which needs
        no files).

        A graph carries over from the base: emptied rows become tombstones (when the matrix
        compacts, the graph's labels follow), rows added are scored exactly until more than
        `max_uncovered_rows` lack a node, then added to the graph. The graph is built afresh
        when there is none, when tombstones pass `max_tombstone_share`, or on request.
        """
        settings = self.ann
        directory = self.store.directory
        vectors = load_npy(directory / name, mmap_mode="r")[:size]
        previous = ann_entry(self.base.state.get("ann", ""))
        kind = settings.chosen_kind(count, current=previous.get("kind", ""))
        stem = f"ann-{generation}"
        usable = previous.get("kind") == kind and previous.get("matrix") == self.base.state.get(
            "vectors"
        )
        if kind != "exact" and usable and not self.rebuild_index:
            index = self._carried_index(previous, vectors, kept_rows)
            if index is not None:
                index.remove(np.asarray(emptied, np.int64))
                entry = {**index.save(directory, stem, previous=previous), "matrix": name}
                if not index.writable:  # memory-mapped: the view a reader would load
                    self._fresh_index = (json.dumps(entry, sort_keys=True), index)
                return entry
        empty = self._empty_rows(kept_rows, size, emptied)
        if kind == "exact":
            if not len(empty):
                return {}
            index = ExactIndex(vectors, removed=empty)
            return {**index.save(directory, stem), "matrix": name}
        index = build_vector_index(vectors, replace(settings, kind=kind), progress=self.progress)
        index.remove(empty)
        self.rebuild_index = False
        return {**index.save(directory, stem), "matrix": name, "built_at": utc_now()}

    def _empty_rows(self, kept_rows: list[int] | range, size: int, emptied: list[int]):
        """The rows of the new matrix without an item: the base's empty rows among
        `kept_rows` (renumbered) and `emptied`."""
        base = self.base
        live = np.ones(size, bool)
        if base.size:
            was_live = base.index.live_mask() if base.index is not None else np.ones(base.size)
            live[: len(kept_rows)] = np.asarray(was_live, bool)[np.asarray(kept_rows, np.int64)]
        live[np.asarray(emptied, np.int64)] = False
        return np.flatnonzero(~live)

    def _carried_index(self, previous: dict, vectors: np.ndarray, kept_rows: list[int] | range):
        """The base's graph for the new matrix `vectors` (row i was the base's row
        `kept_rows[i]`, rows after those are new), grown when many rows lack a node; None when
        it should be built afresh (unreadable, or too many tombstones)."""
        base = self.base
        renumbered = len(kept_rows) < base.size or (
            not isinstance(kept_rows, range) and kept_rows != list(range(len(kept_rows)))
        )
        new_rows = None
        if renumbered:
            new_rows = np.full(base.size, -1, np.int64)
            new_rows[np.asarray(kept_rows, np.int64)] = np.arange(len(kept_rows))
        try:
            return carry_graph(
                self.store.directory,
                previous,
                base.vectors,
                vectors,
                new_rows,
                self.ann,
                progress=self.progress,
                loaded=base.index,
            )
        except (OSError, ValueError, KeyError, IndexStateError) as exc:
            log.warning(
                "%s: the vector index cannot be carried over (%s); building it again",
                self.store.directory,
                exc,
            )
            return None

    def _clean(self, keep: set[str]) -> None:
        for path in self.store.directory.iterdir():
            stale_data = path.name.startswith(_DATA_PREFIXES) and path.suffix in _DATA_SUFFIXES
            stale_tmp = path.name.startswith(tuple(f".{p}" for p in _DATA_PREFIXES))
            stale_tmp = stale_tmp and path.suffix == ".tmp"
            if (stale_data and path.name not in keep) or stale_tmp:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _lock(self) -> None:
        path = self.store.directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise IndexStateError(
                        f"another process is writing the index at {self.store.directory} "
                        f"(waited {self.timeout:.0f} s for its lock); try again when it finishes"
                    ) from None
                time.sleep(0.05)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


def _save_restore_point(
    con: sqlite3.Connection, base: Snapshot, *, items_table: str = "items"
) -> RestorePoint:
    """Within `con`'s open transaction, save `base` (the committed generation whose rows are
    in `items_table`) as the restore point; returns it."""
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


def _counts(con: sqlite3.Connection, state: dict[str, str]) -> tuple[int, int]:
    """(matrix rows, items) of the generation `state` describes; counted for indexes made
    before the state recorded them (they have no empty rows)."""
    if ROWS_KEY in state and COUNT_KEY in state:
        return int(state[ROWS_KEY]), int(state[COUNT_KEY])
    count, last = con.execute("SELECT COUNT(*), MAX(row) FROM items").fetchone()
    return (0 if last is None else last + 1), count


def _exact_over(vectors: np.ndarray, table: ItemTable) -> ExactIndex:
    """Exact search over the rows of `vectors` that hold an item of `table`."""
    live = np.zeros(len(vectors), bool)
    live[table.rows()] = True
    return ExactIndex(vectors, removed=np.flatnonzero(~live))


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


def _files_of(state: dict[str, str]) -> set[str]:
    """The data files a committed state refers to."""
    names = {state.get("vectors", "")} | entry_files(ann_entry(state.get("ann", "")))
    return names - {""}
