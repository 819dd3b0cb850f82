"""The index directory: a JSON header, an SQLite manifest and a memory-mapped vector matrix.

Layout of INDEX_DIR:

    header.json          backbone, pooling, dim, weights fingerprint, package version (immutable)
    manifest.sqlite      items (id, row, path, hash, metadata, timestamps) and state
    vectors-<gen>.npy    float32 (N, dim); row i belongs to the item whose `row` is i (a removed
                         item's row stays, empty, until a commit compacts the matrix)
    ann-<gen>-graph.faiss  indexes of 20k+ rows: a faiss HNSW graph over int8 codes of the rows
    ann-<gen>-labels.npy   int64: the row each graph node holds (-1: removed)
    .lock                writers hold an exclusive lock on it

The parts: `header` (header.json and the file names), `manifest` (schema, migrations,
transactions, state keys), `snapshot` (a consistent view of one committed generation),
`writer` (staging and atomic commits, see there), `matrix` (the vector files), `commit_index`
(the vector index a commit writes), `restore` (the restore point), `lock` (the writers' lock).
The state key `ann` (JSON) names the vector index files with the parameters chosen and the
recall measured (see `stylefinder.index.vector_index`); indexes without it are searched
exactly. The state also counts the matrix rows and the items (`matrix_rows`, `item_count`), so
that opening reads no item row: snapshots read items when asked (`stylefinder.index.items`).

Example:
    >>> store = IndexStore.open("my-index")  # doctest: +SKIP
    >>> snapshot = store.snapshot()  # doctest: +SKIP
    >>> len(snapshot), snapshot.vectors.shape  # doctest: +SKIP
    (1000, (1000, 1280))
"""

from __future__ import annotations

from pathlib import Path

from stylefinder.errors import DamagedIndexError, IndexStateError
from stylefinder.index.header import (
    HEADER_FILE,
    MANIFEST_FILE,
    REBUILD_HINT,
    IndexHeader,
    read_header,
    write_header,
)
from stylefinder.index.manifest import Manifest
from stylefinder.index.restore import RestorePoint, read_restore_point
from stylefinder.index.snapshot import Snapshot, read_snapshot
from stylefinder.index.vector_index import AnnSettings
from stylefinder.index.writer import IndexWriter
from stylefinder.types import EmbeddingSpace


class IndexStore:
    """An index directory on disk. `create` makes one, `open` checks and opens one."""

    def __init__(self, directory: str | Path, header: IndexHeader) -> None:
        self.directory = Path(directory)
        self.header = header
        self.manifest = Manifest(self.directory)  # its read connection shared by snapshots

    def close(self) -> None:
        """Close the manifest's shared read connection (a later read opens it again); the
        counterpart of `PgCatalog.close`."""
        self.manifest.close()

    # -- opening ---------------------------------------------------------------------------------

    @staticmethod
    def exists(directory: str | Path) -> bool:
        """True when `directory` holds an index (its header file)."""
        return (Path(directory) / HEADER_FILE).is_file()

    @classmethod
    def open(cls, directory: str | Path) -> IndexStore:
        """Open an existing index, or raise `IndexStateError` saying what is wrong."""
        directory = Path(directory)
        header = read_header(directory)
        if not (directory / MANIFEST_FILE).is_file():
            hint = REBUILD_HINT.format(directory=directory)
            raise DamagedIndexError(f"{directory} is damaged: {MANIFEST_FILE} is missing; {hint}")
        store = cls(directory, header)
        store.manifest.upgrade()
        return store

    @classmethod
    def create(cls, directory: str | Path, space: EmbeddingSpace) -> IndexStore:
        """Create an empty index for vectors of `space` (the directory may exist, empty or not)."""
        directory = Path(directory)
        if cls.exists(directory):
            raise IndexStateError(f"an index already exists at {directory}")
        directory.mkdir(parents=True, exist_ok=True)
        store = cls(directory, IndexHeader.for_space(space))
        store.manifest.create()
        write_header(directory, store.header)
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
        return self.manifest.generation()

    def restore_point(self) -> RestorePoint | None:
        """The generation `stylefinder restore` would bring back, or None when there is none.

        Example:
            >>> store.restore_point()  # doctest: +SKIP
            RestorePoint(generation=4, items=1000, saved_at='2026-12-01T10:00:00+00:00', ...)
        """
        return read_restore_point(self.manifest)

    def snapshot(self, previous: Snapshot | None = None) -> Snapshot:
        """Read the committed generation: its state, a read-only memory map of the vectors and
        the vector index; items are read when asked for (`Snapshot.items`).

        With `previous` (an earlier snapshot of this index), an unchanged generation returns it
        as it is.

        Example:
            >>> snapshot = store.snapshot()  # doctest: +SKIP
            >>> store.snapshot(previous=snapshot) is snapshot  # no commit since  # doctest: +SKIP
            True
        """
        return read_snapshot(self.manifest, self.header, previous)

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

        Example:
            >>> with store.writer() as writer:  # doctest: +SKIP
            ...     writer.put(item, vector)
        """
        return IndexWriter(
            self.manifest,
            self.header,
            timeout=timeout,
            ann=ann,
            previous=previous,
            keep_restore_point=keep_restore_point,
            progress=progress,
        )
