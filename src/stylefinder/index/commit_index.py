"""The vector index a commit writes for its new matrix: carried over from the generation before
when it can be, built afresh when it must.

A graph carries over from the base: emptied rows become tombstones (when the matrix compacts,
the graph's labels follow), rows added are scored exactly until more than `max_uncovered_rows`
lack a node, then added to the graph. The graph is built afresh when there is none, when
tombstones pass `max_tombstone_share`, or on request. Exact search needs files only to remember
empty rows.

Example:
    >>> written = write_vector_index(folder, base, AnnSettings(), generation=5,
    ...     matrix="vectors-5.npy", kept_rows=range(1000), size=1010, count=1009,
    ...     emptied=[3])  # doctest: +SKIP
    >>> written.entry["kind"]  # doctest: +SKIP
    'hnsw'
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from stylefinder.errors import IndexStateError
from stylefinder.index.header import utc_now
from stylefinder.index.hnsw import carry_graph
from stylefinder.index.kinds import build_vector_index
from stylefinder.index.manifest import ann_entry
from stylefinder.index.snapshot import Snapshot
from stylefinder.index.vector_index import AnnSettings, ExactIndex, VectorIndex
from stylefinder.io.files import load_npy

log = logging.getLogger(__name__)


class WrittenIndex(NamedTuple):
    """What `write_vector_index` wrote: the state's `ann` entry ({}: exact search without empty
    rows, no files), the index a reader would load for it when it is already at hand (as
    (entry JSON, index), else None), and whether it was built afresh."""

    entry: dict
    fresh: tuple[str, VectorIndex] | None = None
    built: bool = False


def write_vector_index(
    directory: Path,
    base: Snapshot,
    settings: AnnSettings,
    *,
    generation: int,
    matrix: str,
    kept_rows: list[int] | range,
    size: int,
    count: int,
    emptied: list[int],
    rebuild: bool = False,
    progress: bool = False,
) -> WrittenIndex:
    """Write the vector index for the new matrix file `matrix` (`size` rows, `count` items) of
    generation `generation`: row i was the `base`'s row `kept_rows[i]`, rows after those are
    new, and rows `emptied` lost their item. `rebuild` builds a graph afresh even when the
    base's could be carried over.

    Example:
        >>> write_vector_index(folder, base, AnnSettings(kind="exact"), generation=5,
        ...     matrix="vectors-5.npy", kept_rows=range(10), size=10, count=10,
        ...     emptied=[]).entry  # doctest: +SKIP
        {}
    """
    vectors = load_npy(directory / matrix, mmap_mode="r")[:size]
    previous = ann_entry(base.state.get("ann", ""))
    kind = settings.chosen_kind(count, current=previous.get("kind", ""))
    stem = f"ann-{generation}"
    usable = previous.get("kind") == kind and previous.get("matrix") == base.state.get("vectors")
    if kind != "exact" and usable and not rebuild:
        index = _carried_index(directory, base, previous, vectors, kept_rows, settings, progress)
        if index is not None:
            index.remove(np.asarray(emptied, np.int64))
            entry = {**index.save(directory, stem, previous=previous), "matrix": matrix}
            fresh = None
            if not index.writable:  # memory-mapped: the view a reader would load
                fresh = (json.dumps(entry, sort_keys=True), index)
            return WrittenIndex(entry, fresh)
    empty = _empty_rows(base, kept_rows, size, emptied)
    if kind == "exact":
        if not len(empty):
            return WrittenIndex({})
        index = ExactIndex(vectors, removed=empty)
        return WrittenIndex({**index.save(directory, stem), "matrix": matrix})
    index = build_vector_index(vectors, replace(settings, kind=kind), progress=progress)
    index.remove(empty)
    entry = {**index.save(directory, stem), "matrix": matrix, "built_at": utc_now()}
    return WrittenIndex(entry, built=True)


def _empty_rows(base: Snapshot, kept_rows: list[int] | range, size: int, emptied: list[int]):
    """The rows of the new matrix without an item: the base's empty rows among
    `kept_rows` (renumbered) and `emptied`."""
    live = np.ones(size, bool)
    if base.size:
        was_live = base.index.live_mask() if base.index is not None else np.ones(base.size)
        live[: len(kept_rows)] = np.asarray(was_live, bool)[np.asarray(kept_rows, np.int64)]
    live[np.asarray(emptied, np.int64)] = False
    return np.flatnonzero(~live)


def _carried_index(
    directory: Path,
    base: Snapshot,
    previous: dict,
    vectors: np.ndarray,
    kept_rows: list[int] | range,
    settings: AnnSettings,
    progress: bool,
):
    """The base's graph for the new matrix `vectors` (row i was the base's row
    `kept_rows[i]`, rows after those are new), grown when many rows lack a node; None when
    it should be built afresh (unreadable, or too many tombstones)."""
    renumbered = len(kept_rows) < base.size or (
        not isinstance(kept_rows, range) and kept_rows != list(range(len(kept_rows)))
    )
    new_rows = None
    if renumbered:
        new_rows = np.full(base.size, -1, np.int64)
        new_rows[np.asarray(kept_rows, np.int64)] = np.arange(len(kept_rows))
    try:
        return carry_graph(
            directory,
            previous,
            base.vectors,
            vectors,
            new_rows,
            settings,
            progress=progress,
            loaded=base.index,
        )
    except (OSError, ValueError, KeyError, IndexStateError) as exc:
        log.warning(
            "%s: the vector index cannot be carried over (%s); building it again",
            directory,
            exc,
        )
        return None
