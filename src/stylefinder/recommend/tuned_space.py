"""A tuned index's search space kept on disk: the projected matrix and its vector index.

A tuned index is searched in the space of its projection (`stylefinder tune`). Projecting 70k
items takes several seconds and building their search graph a few more. Without a copy on disk,
every process paid that cost on its first query, and again after every commit. Now `tune` and
`index` runs write each generation's space under `<index>/tuned/` (`pipeline.update_tuned_space`)
and engines memory-map it; an engine that finds none for its generation (after a commit by
another writer, such as the API's) writes it:

    matrix-<gen>-<key>-<token>.npy        float32: the projected rows, in the index's row order,
                                          then unwritten spare rows (<gen>: the generation
                                          that wrote the index's matrix; <token>: its writer's)
    rows-<gen>-<key>-<token>.npy          uint64 (N,): a digest of each row's raw vector
    ann-<gen>-<key>-<token>-graph.faiss   from `AnnSettings.min_rows` rows: a faiss HNSW graph
                                          over int8 codes of the projected rows
    ann-<gen>-<key>-<token>-labels.npy    int64: the row each graph node holds (-1: removed)
    stage-<gen>-<key>.npz                 which of the files above (of this generation or an
                                          earlier one) make up the space, and the vector
                                          index's entry (kind, files, search width, recall:
                                          what `VectorIndex.save` returned); written last, so
                                          it marks a complete space

`key` is the digest of projection.npz, so a new `stylefinder tune` starts afresh. When the
index only gained rows since the newest earlier space (commits of additions append to the
index's matrix file), the new rows are projected into that space's spare rows, and its graph
stays: the rows it lacks are scored exactly until more than `max_uncovered_rows` do, then the
graph grows into new files. Otherwise a new generation copies the rows whose raw vector the
newest earlier space already projected and projects only the rest; its graph carries over as
the index store's does (nodes renumbered, removed rows left as tombstones, new rows uncovered
or grown into it) and is built afresh when tombstones pass `max_tombstone_share`. Committed
rows of the index never change, so engines that extend the same space at once write the same
rows. Files are written atomically, and the files no newer complete space uses are removed.
Where the folder cannot be written, the space and its index are built in memory.

Example:
    >>> matrix, index = tuned_space(store.directory, snapshot, projection)  # doctest: +SKIP
    >>> matrix.shape, index.kind  # doctest: +SKIP
    ((70000, 2432), 'hnsw')
    >>> rows, scores = index.search(matrix[:1], 10)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylefinder.errors import IndexStateError
from stylefinder.index.hnsw import carry_graph
from stylefinder.index.kinds import build_vector_index, load_vector_index
from stylefinder.index.matrix import MIN_SPARE_ROWS
from stylefinder.index.snapshot import Snapshot
from stylefinder.index.vector_index import (
    DEFAULT_ANN,
    AnnSettings,
    ExactIndex,
    VectorIndex,
    entry_files,
)
from stylefinder.io.diskspace import reserve
from stylefinder.io.files import (
    atomic_write,
    load_npy,
    load_npz,
    npy_bytes,
    npz_bytes,
    write_npy,
)
from stylefinder.recommend.projection import TUNED_FOLDER, Projection

log = logging.getLogger(__name__)

# data files carry a token of their writer: a space written again (by an engine of an older
# generation, or after a damage) never replaces a file that a newer space grew into
# (codes-: the first stage of older versions, removed like the others)
_FILE = re.compile(
    r"^(matrix|rows|ann|stage|codes)-(\d+)-([0-9a-f]+)(-[0-9a-f]+)?"
    r"(-graph\.faiss|-labels\.npy|-removed\.npy|\.np[yz])$"
)
_BLOCK_ROWS = 16_384  # rows projected or copied per step
_INDEX_ERRORS = (OSError, ValueError, KeyError, IndexStateError)  # an unreadable index file


def tuned_space(
    directory: str | Path,
    snapshot: Snapshot,
    projection: Projection,
    settings: AnnSettings = DEFAULT_ANN,
) -> tuple[np.ndarray, VectorIndex]:
    """The projected matrix of `snapshot` and a vector index searching it: an `ExactIndex`
    below `settings.min_rows` rows (or with kind "exact"), else an HNSW graph. They are read
    from `<directory>/tuned/`, or built and written there (see the module docstring); a
    space already written is used as it is, whatever `settings` say.

    Example:
        >>> matrix, index = tuned_space("shop", engine.snapshot, projection)  # doctest: +SKIP
        >>> rows, scores = index.search(projection.apply(query), 10)  # doctest: +SKIP
    """
    matrix, index = _stored_or_built(Path(directory) / TUNED_FOLDER, snapshot, projection, settings)
    if snapshot.index is not None and len(snapshot) < snapshot.size:  # removed items' rows
        index.remove(np.flatnonzero(~snapshot.index.live_mask()))
    return matrix, index


def _stored_or_built(
    folder: Path, snapshot: Snapshot, projection: Projection, settings: AnnSettings
) -> tuple[np.ndarray, VectorIndex]:
    if not projection.digest or not len(snapshot):
        return _in_memory(snapshot, projection, settings)
    generation = _matrix_generation(snapshot)
    name = f"{generation}-{projection.digest}"
    stored = _load(folder, name, projection.dim, rows=snapshot.size)
    if stored is not None:
        index = _open_index(folder, stored)
        if index is not None:
            return stored.matrix, index
    try:
        folder.mkdir(exist_ok=True)
        previous = _previous(folder, generation, projection.digest, projection.dim, stored)
        space = _extend(folder, generation, snapshot, projection, previous, settings)
        if space is None:
            space = _build(folder, generation, snapshot, projection, settings, previous)
    except OSError as exc:
        log.warning("%s: cannot write the tuned search space (%s); built in memory", folder, exc)
        return _in_memory(snapshot, projection, settings)
    _remove_stale(folder, generation, projection.digest, keep=space.file_names())
    return space.matrix, space.index


def row_digests(vectors: np.ndarray) -> np.ndarray:
    """A 64-bit digest of each row's bytes (N,) uint64: equal rows, equal digests.

    Example:
        >>> rows = np.eye(3, dtype=np.float32)
        >>> bool(row_digests(rows)[0] == row_digests(rows[:1])[0])
        True
    """
    out = np.empty(len(vectors), np.uint64)
    for start in range(0, len(vectors), _BLOCK_ROWS):
        block = np.ascontiguousarray(vectors[start : start + _BLOCK_ROWS], np.float32)
        out[start : start + len(block)] = [
            int.from_bytes(hashlib.blake2b(row, digest_size=8).digest(), "little") for row in block
        ]
    return out


def _matrix_generation(snapshot: Snapshot) -> int:
    """The generation that last changed the snapshot's vectors: commits that change only
    metadata keep the matrix, and so the tuned space, of an earlier generation."""
    if "matrix_generation" in snapshot.state:
        return int(snapshot.state["matrix_generation"])
    match = re.fullmatch(r"vectors-(\d+)\.npy", snapshot.state.get("vectors", ""))  # older
    return int(match[1]) if match else snapshot.generation


@dataclass
class _Space:
    matrix: np.ndarray  # the projected rows (a view of the first N rows of the matrix file)
    info: dict  # the stage entry: rows, vectors (the index's matrix file), files, index
    files: dict[str, str]  # "matrix", "rows": file names
    index: VectorIndex | None = None
    digests: np.ndarray | None = None

    @property
    def entry(self) -> dict | None:
        """The vector index's entry (None: none usable, as older versions wrote)."""
        entry = self.info.get("index")
        return entry if isinstance(entry, dict) else None

    def file_names(self) -> set[str]:
        """The files that make up the space."""
        return set(self.files.values()) | entry_files(self.entry or {})


def _in_memory(
    snapshot: Snapshot, projection: Projection, settings: AnnSettings
) -> tuple[np.ndarray, VectorIndex]:
    matrix = projection.apply(snapshot.vectors)
    if not len(matrix):
        return matrix, ExactIndex(matrix)
    return matrix, build_vector_index(matrix, settings)


def _load(folder: Path, name: str, width: int, rows: int | None = None) -> _Space | None:
    """The complete space `name` of projected rows `width` wide (and `rows` of them, when
    given), without its index; None when it is missing, damaged or of another size."""
    try:
        info = json.loads(str(load_npz(folder / f"stage-{name}.npz")["info"]))
        files = info.get("files") or {  # as the first version wrote them
            "matrix": f"matrix-{name}.npy",
            "rows": f"rows-{name}.npy",
        }
        files = {key: files[key] for key in ("matrix", "rows")}  # older: "codes" too
        stored = load_npy(folder / files["matrix"], mmap_mode="r")
        count = int(info.get("rows", len(stored)))
        if rows is not None and count != rows:
            raise ValueError(f"{count} rows, expected {rows}")
        if stored.ndim != 2 or stored.shape[1] != width or stored.dtype != np.float32:
            raise ValueError(f"matrix {stored.shape} {stored.dtype}, expected {width} float32")
        if len(stored) < count:
            raise ValueError(f"matrix of {len(stored)} rows, expected {count}")
        return _Space(stored[:count], info, files)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s: tuned space %s unreadable (%s); building it again", folder, name, exc)
        return None


def _open_index(folder: Path, space: _Space) -> VectorIndex | None:
    """The vector index of `space` as saved (graph files memory-mapped); None when there is
    none (an older version's space) or it is unreadable, whose entry is then dropped so that
    it is not carried over."""
    entry = space.entry
    if entry is None:
        log.info("%s: tuned space of an older version; building its vector index", folder)
        return None
    try:
        space.index = load_vector_index(folder, entry, space.matrix)
    except _INDEX_ERRORS as exc:
        log.warning(
            "%s: tuned space's vector index unreadable (%s); building it again", folder, exc
        )
        del space.info["index"]
        return None
    return space.index


def _previous(
    folder: Path, generation: int, key: str, width: int, current: _Space | None
) -> _Space | None:
    """The space whose projected rows to reuse, with its row digests: `current` (this
    generation's, whose index was unusable), else the newest complete space of another
    generation for the projection `key`; None when there is none."""
    for space in _candidates(folder, generation, key, width, current):
        try:
            digests = load_npy(folder / space.files["rows"])
        except (OSError, ValueError):
            continue
        if digests.dtype == np.uint64 and digests.shape == (len(space.matrix),):
            space.digests = digests
            return space
    return None


def _candidates(
    folder: Path, generation: int, key: str, width: int, current: _Space | None
) -> Iterator[_Space]:
    if current is not None:
        yield current
    generations = []
    for path in folder.glob(f"stage-*-{key}.npz"):
        match = _FILE.match(path.name)
        if match and int(match[2]) != generation:
            generations.append(int(match[2]))
    for other in sorted(generations, reverse=True):
        space = _load(folder, f"{other}-{key}", width)
        if space is not None:
            yield space


def _extend(
    folder: Path,
    generation: int,
    snapshot: Snapshot,
    projection: Projection,
    previous: _Space | None,
    settings: AnnSettings,
) -> _Space | None:
    """The space of `snapshot` as `previous` with the rows the index gained since projected into
    its spare rows, and its index kept (grown when too many rows lack a node); None when the
    index changed otherwise, there is no room, or the kind of index should change."""
    if previous is None or "vectors" not in previous.info:
        return None
    start, total = len(previous.matrix), snapshot.size
    if previous.info["vectors"] != snapshot.state.get("vectors") or start >= total:
        return None  # not only rows appended to the same matrix file
    entry = previous.entry
    kind = settings.chosen_kind(total)
    if entry is None or entry.get("kind") != kind:
        return None
    path = folder / previous.files["matrix"]
    stored = load_npy(path, mmap_mode="r+")
    if stored.shape[0] < total:
        return None
    added = np.asarray(snapshot.vectors[start:total])
    row_bytes = stored.shape[1] * stored.itemsize
    reserve(path, offset=stored.offset + start * row_bytes, nbytes=(total - start) * row_bytes)
    stored[start:total] = projection.apply(added)
    stored.flush()
    del stored
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    matrix = load_npy(path, mmap_mode="r")[:total]
    if kind == "exact":
        index: VectorIndex | None = ExactIndex(matrix)
    else:
        index = _carried(folder, entry, previous.matrix, matrix, None, settings)
    if index is None:
        return None  # unreadable: built afresh (the rows written stay unused spare rows)
    name = f"{generation}-{projection.digest}"
    token = secrets.token_hex(4)
    saved = index.save(folder, f"ann-{name}-{token}", previous=entry)
    digests = np.concatenate([previous.digests, row_digests(added)])
    files = {**previous.files, "rows": f"rows-{name}-{token}.npy"}
    atomic_write(folder / files["rows"], npy_bytes(digests))
    info = {**previous.info, "rows": total, "files": files, "index": saved}
    atomic_write(folder / f"stage-{name}.npz", npz_bytes(info=json.dumps(info)))
    log.info("tuned search space %s: %d rows projected into %s", name, total - start, path.name)
    return _Space(matrix, info, files, index, digests)


def _build(
    folder: Path,
    generation: int,
    snapshot: Snapshot,
    projection: Projection,
    settings: AnnSettings,
    previous: _Space | None,
) -> _Space:
    name = f"{generation}-{projection.digest}"
    vectors = snapshot.vectors
    digests = row_digests(vectors)
    source = _sources(digests, previous)

    def fill(out: np.ndarray) -> None:
        for start in range(0, len(source), _BLOCK_ROWS):
            part = source[start : start + _BLOCK_ROWS]
            kept, new = np.flatnonzero(part >= 0), np.flatnonzero(part < 0)
            if len(kept):
                out[start + kept] = previous.matrix[part[kept]]
            if len(new):
                out[start + new] = projection.apply(vectors[start + new])

    total = len(vectors)
    token = secrets.token_hex(4)
    files = {key: f"{key}-{name}-{token}.npy" for key in ("matrix", "rows")}
    spare = max(MIN_SPARE_ROWS, total // 4)  # for rows added later; unwritten, they take no disk
    shape = (total + spare, projection.dim)
    write_npy(folder / files["matrix"], shape, fill, filled_rows=total)
    matrix = load_npy(folder / files["matrix"], mmap_mode="r")[:total]
    atomic_write(folder / files["rows"], npy_bytes(digests))
    index, carried = _index_for(folder, matrix, source, previous, settings)
    saved = index.save(folder, f"ann-{name}-{token}", previous=carried)
    info = {"rows": total, "vectors": snapshot.state.get("vectors", ""), "files": files}
    info["index"] = saved
    atomic_write(folder / f"stage-{name}.npz", npz_bytes(info=json.dumps(info)))
    kept = int(np.count_nonzero(source >= 0))
    how = "carried over" if carried is not None else "built"
    log.info(
        "tuned search space %s: %d rows projected, %d copied; %s index %s",
        name,
        len(source) - kept,
        kept,
        index.kind,
        how,
    )
    return _Space(matrix, info, files, index, digests)


def _sources(digests: np.ndarray, previous: _Space | None) -> np.ndarray:
    """For each row, the row of `previous` with the same raw vector, or -1."""
    if previous is None or previous.digests is None or not len(previous.digests):
        return np.full(len(digests), -1, np.int64)
    order = np.argsort(previous.digests, kind="stable")
    ranked = previous.digests[order]
    at = np.minimum(np.searchsorted(ranked, digests), len(ranked) - 1)
    return np.where(ranked[at] == digests, order[at], -1).astype(np.int64)


def _index_for(
    folder: Path,
    matrix: np.ndarray,
    source: np.ndarray,
    previous: _Space | None,
    settings: AnnSettings,
) -> tuple[VectorIndex, dict | None]:
    """The vector index of `matrix` (row i was `previous`'s row `source[i]`, -1: new), and the
    entry it was carried over from: `previous`'s graph, its nodes renumbered, while it is
    readable and tombstones stay within `max_tombstone_share`; else built (entry None)."""
    entry = previous.entry if previous is not None else None
    if settings.chosen_kind(len(matrix)) == "hnsw" and entry and entry.get("kind") == "hnsw":
        new_rows = np.full(len(previous.matrix), -1, np.int64)
        kept = np.flatnonzero(source >= 0)
        new_rows[source[kept]] = kept  # duplicates: one row keeps the node, the others uncovered
        index = _carried(folder, entry, previous.matrix, matrix, new_rows, settings)
        if index is not None:
            return index, entry
    return build_vector_index(matrix, settings), None


def _carried(
    folder: Path,
    entry: dict,
    vectors: np.ndarray,
    matrix: np.ndarray,
    new_rows: np.ndarray | None,
    settings: AnnSettings,
) -> VectorIndex | None:
    """`carry_graph` for the tuned space: None (build it afresh) when too many nodes were
    removed or its files cannot be read."""
    try:
        index = carry_graph(folder, entry, vectors, matrix, new_rows, settings)
    except _INDEX_ERRORS as exc:
        log.warning("%s: tuned space's graph not carried over (%s); building it again", folder, exc)
        return None
    if index is None:
        log.info("%s: many of the graph's nodes removed; building it again", folder)
    return index


def _remove_stale(folder: Path, generation: int, key: str, keep: set[str]) -> None:
    """Delete the files of earlier generations and of other projections, but those in `keep`
    (the files the space of `generation` uses)."""
    for path in folder.iterdir():
        match = _FILE.match(path.name)
        stale = match and (int(match[2]) < generation or match[3] != key)
        if stale and path.name not in keep:
            with contextlib.suppress(OSError):  # in use elsewhere (Windows) or already gone
                path.unlink()
