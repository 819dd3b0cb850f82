"""The index's writer: stages additions, replacements and removals under the writers' lock,
and commits them as a new generation.

A commit writes the new matrix (and vector index) to new files, or appends to the spare rows of
the current matrix, then switches the manifest to them in one SQLite transaction. Killing a
writer at any moment therefore leaves the last committed generation loadable, and readers never
see a manifest and a matrix that disagree.

Example:
    >>> with store.writer() as writer:  # doctest: +SKIP
    ...     writer.put(item, vector)
    ...     writer.remove("old-id")
"""

from __future__ import annotations

import json

import numpy as np

from stylefinder.errors import UnknownItemError
from stylefinder.index.commit_index import write_vector_index
from stylefinder.index.header import IndexHeader, utc_now
from stylefinder.index.items import ITEM_COLUMNS, LAYOUT_KEY, item_to_row
from stylefinder.index.lock import WriterLock
from stylefinder.index.manifest import ANN_KIND_KEY, COUNT_KEY, ROWS_KEY, Manifest, files_of
from stylefinder.index.matrix import append_in_place, clean_data_files, write_matrix
from stylefinder.index.restore import (
    RestorePoint,
    read_restore_point,
    restore_generation,
    save_restore_point,
)
from stylefinder.index.snapshot import Snapshot, read_snapshot
from stylefinder.index.vector_index import DEFAULT_ANN, AnnSettings, VectorIndex
from stylefinder.types import Item

MAX_HOLE_SHARE = 0.2  # removed items' empty rows kept in the matrix until they pass this share
_PLACEHOLDERS = ", ".join("?" * (1 + len(ITEM_COLUMNS.split(","))))  # row + item columns


class IndexWriter:
    """Stages additions, replacements and removals, and commits them atomically (made by
    `IndexStore.writer`).

    Example:
        >>> with store.writer() as writer:  # doctest: +SKIP
        ...     writer.put(item, vector)
        ...     writer.remove("old-id")
        ...     writer.commit()  # also done on a clean exit; an exception discards staged work
    """

    def __init__(
        self,
        manifest: Manifest,
        header: IndexHeader,
        *,
        timeout: float,
        ann: AnnSettings | None = None,
        previous: Snapshot | None = None,
        keep_restore_point: bool = False,
        progress: bool = False,
    ) -> None:
        self.manifest, self.header = manifest, header
        self.directory = manifest.directory
        self.timeout = timeout
        self._chosen_ann = ann
        self.ann = ann or DEFAULT_ANN
        self.progress = progress
        self.rebuild_index = False  # set: the next commit builds the vector index afresh
        self._fresh_index: tuple[str, VectorIndex] | None = None  # (state entry, its index)
        self._save_restore_point = keep_restore_point
        self._restore: RestorePoint | None = None
        self._lock = WriterLock(self.directory, timeout)
        self._base: Snapshot | None = previous  # read again under the lock on entry
        self._puts: dict[str, tuple[Item, np.ndarray | None]] = {}
        self._removals: set[str] = set()
        self._state_updates: dict[str, str] = {}

    def __enter__(self) -> IndexWriter:
        self._lock.acquire()
        try:
            self._base = read_snapshot(self.manifest, self.header, previous=self._base)
            self._restore = read_restore_point(self.manifest)
            if self._chosen_ann is None:  # the kind this index was built with
                self.ann = AnnSettings(kind=self._base.state.get(ANN_KIND_KEY, "auto"))
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self._lock.release()

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
            if vector.shape != (self.header.dim,) or not np.isfinite(vector).all():
                raise ValueError(f"vector for {item.id!r} must be {self.header.dim} finite floats")
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
                write_matrix(self.directory / name, base.vectors, kept_rows, vectors)
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
        with self.manifest.transaction() as con:
            if self._save_restore_point:
                self._restore = save_restore_point(con, base)
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
        self._base = read_snapshot(self.manifest, self.header, fresh=fresh)
        self._clean(keep=files_of(self._base.state) | files_of(base.state) | self._kept())
        return generation

    def restore(self) -> int:
        """Bring back the restore point's items, vectors and catalog folder as a new generation,
        and keep the generation it replaces as the new restore point (a second restore undoes
        the first). Staged changes are discarded. Returns the new generation number.

        Example:
            >>> with store.writer() as writer:  # doctest: +SKIP
            ...     writer.restore()
        """
        generation, self._restore = restore_generation(
            self.manifest, self.header.dim, self._restore, self.base
        )
        self._discard_staged()
        self._base = read_snapshot(self.manifest, self.header)
        self._clean(keep=files_of(self._base.state) | self._kept())
        return generation

    def _discard_staged(self) -> None:
        self._puts.clear()
        self._removals.clear()
        self._state_updates = {}

    def _kept(self) -> set[str]:
        """The data files of the restore point, kept while it is."""
        return files_of(self._restore.state) if self._restore is not None else set()

    def _append_in_place(self, name: str, vectors: list[np.ndarray]) -> bool:
        """`append_in_place` after the base's rows of its matrix file `name`, unless the
        restore point reads the spare rows there."""
        point = self._restore
        restore_rows = point.rows if point is not None and point.state.get("vectors") == name else 0
        return append_in_place(
            self.directory, name, self.base.size, vectors, restore_rows=restore_rows
        )

    def _write_index(
        self,
        generation: int,
        name: str,
        kept_rows: list[int] | range,
        size: int,
        count: int,
        emptied: list[int],
    ) -> dict:
        """`write_vector_index` for the new matrix `name`, with this writer's settings; returns
        its state entry."""
        written = write_vector_index(
            self.directory,
            self.base,
            self.ann,
            generation=generation,
            matrix=name,
            kept_rows=kept_rows,
            size=size,
            count=count,
            emptied=emptied,
            rebuild=self.rebuild_index,
            progress=self.progress,
        )
        if written.fresh is not None:
            self._fresh_index = written.fresh
        if written.built:
            self.rebuild_index = False
        return written.entry

    def _clean(self, keep: set[str]) -> None:
        clean_data_files(self.directory, keep)
