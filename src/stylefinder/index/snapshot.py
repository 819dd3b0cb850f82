"""A consistent view of one committed generation, and how it is read from the index folder.

A snapshot reads the manifest's state (one short transaction), memory-maps the matrix it names
and loads the vector index of its `ann` entry; items are read when asked for
(`stylefinder.index.items`). A vector index that is missing, damaged or made for another matrix
is replaced by exact search, so a reader always answers right.

Example:
    >>> snapshot = read_snapshot(manifest, header)  # doctest: +SKIP
    >>> len(snapshot), snapshot.vectors.shape  # doctest: +SKIP
    (1000, (1000, 1280))
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stylefinder.errors import IndexStateError
from stylefinder.index.header import REBUILD_HINT, IndexHeader
from stylefinder.index.items import LAYOUT_KEY, ItemTable, RowLookup
from stylefinder.index.kinds import load_vector_index
from stylefinder.index.manifest import Manifest, ann_entry, counts
from stylefinder.index.matrix import load_vectors
from stylefinder.index.vector_index import ExactIndex, VectorIndex

log = logging.getLogger(__name__)

_READ_ATTEMPTS = 10  # reads of a generation whose files a writer replaced meanwhile


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

    def vector_of(self, item_id: str) -> np.ndarray:
        """The vector of item `item_id` (a read-only row of the matrix)."""
        return self.vectors[self.row_of[item_id]]


def read_snapshot(
    manifest: Manifest,
    header: IndexHeader,
    previous: Snapshot | None = None,
    fresh: tuple[str, VectorIndex] | None = None,
) -> Snapshot:
    """The committed generation of the index whose manifest is `manifest`.

    With `previous` (an earlier snapshot of this index), an unchanged generation returns it
    as it is; `fresh` (the state's `ann` entry and the index a writer just saved for it)
    spares loading that index again.

    Example:
        >>> read_snapshot(manifest, header).generation  # doctest: +SKIP
        4
    """
    directory = manifest.directory

    def read_state(con: sqlite3.Connection) -> tuple[dict[str, str], tuple[int, int] | None]:
        state = dict(con.execute("SELECT key, value FROM state"))
        unchanged = previous is not None and previous.state == state
        return state, None if unchanged else counts(con, state)

    for _attempt in range(_READ_ATTEMPTS):
        state, found = manifest.read(read_state)
        if found is None:  # the generation of `previous`
            return previous
        size, count = found
        try:
            vectors = load_vectors(directory, state.get("vectors", ""), size, header.dim)
            table = ItemTable(
                manifest.read,
                size=size,
                count=count,
                generation=state.get("generation", "0"),
                layout=state.get(LAYOUT_KEY, ""),
            )
            if fresh is not None and fresh[0] == state.get("ann") and fresh[1].size == size:
                index = fresh[1]
                index.bind(vectors)
            else:
                index = _load_index(directory, state, vectors, table)
        except FileNotFoundError:  # a writer replaced that generation meanwhile: read again
            time.sleep(0.01)
            continue
        generation = int(state.get("generation", 0))
        return Snapshot(header, generation, table, vectors, state, index)
    hint = REBUILD_HINT.format(directory=directory)
    raise IndexStateError(
        f"{directory}: the vector file named by the manifest keeps disappearing while "
        "it is read (another process replaces it faster than this one can open it, or the "
        "folder is being deleted or synced). Stop other writers and try again; if no other "
        f"process writes, the index is damaged: {hint}"
    )


def _load_index(
    directory: Path, state: dict[str, str], vectors: np.ndarray, table: ItemTable
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
            directory,
        )
        return _exact_over(vectors, table)
    try:
        return load_vector_index(directory, entry, vectors)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, IndexStateError) as exc:
        log.warning("%s: vector index unreadable (%s); searching exactly", directory, exc)
        return _exact_over(vectors, table)


def _exact_over(vectors: np.ndarray, table: ItemTable) -> ExactIndex:
    """Exact search over the rows of `vectors` that hold an item of `table`."""
    live = np.zeros(len(vectors), bool)
    live[table.rows()] = True
    return ExactIndex(vectors, removed=np.flatnonzero(~live))
