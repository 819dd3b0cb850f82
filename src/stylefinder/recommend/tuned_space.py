"""A tuned index's search space kept on disk: the projected matrix and its first stage.

A tuned index is searched in the space of its projection (`stylefinder tune`). Projecting 70k
items takes several seconds and fitting their first stage a few more. Without a copy on disk,
every process paid that cost on its first query, and again after every commit. Now the first
engine that needs a generation's space writes it under `<index>/tuned/`, and the others
memory-map it:

    matrix-<gen>-<key>-<token>.npy   float32: the projected rows, in the index's row order,
                                     then unwritten spare rows (<gen>: the generation that
                                     wrote the index's matrix; <token>: its writer's)
    rows-<gen>-<key>-<token>.npy     uint64 (N,): a digest of each row's raw vector
    codes-<gen>-<key>-<token>.npy    from 20k rows: the first stage's codes
    stage-<gen>-<key>.npz            its kind, pool, recall and basis or scales, and which
                                     of the files above (of this generation or an earlier
                                     one) make up the space; written last, so it marks a
                                     complete space

`key` is the digest of projection.npz, so a new `stylefinder tune` starts afresh. When the
index only gained rows since the newest earlier space (commits of additions append to the
index's matrix file), the new rows are projected into that space's spare rows, and its first
stage stays while few rows lack codes (they are scored exactly), as commits do. Otherwise a new
generation copies the rows whose raw vector the newest earlier space already projected and
projects only the rest; while few rows changed since its fit, it keeps that space's first stage
(basis or scales, pool). Committed rows of the index never change, so engines that extend the
same space at once write the same rows. Files are written atomically, and the files no newer
complete space uses are removed. Where the folder cannot be written, the space is built in
memory.

Example:
    >>> matrix, stage = tuned_space(store.directory, snapshot, projection)  # doctest: +SKIP
    >>> matrix.shape, type(stage).__name__  # doctest: +SKIP
    ((70000, 2432), 'CoarseIndex')
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylefinder.index.coarse import (
    DEFAULT_SETTINGS,
    CoarseSettings,
    build_first_stage,
    carry_stage,
    fit_first_stage,
    stage_arrays,
    stage_from_arrays,
    stage_kinds,
)
from stylefinder.index.diskspace import reserve
from stylefinder.index.search import FirstStage
from stylefinder.index.store import (
    _MAX_UNCOVERED_ROWS,
    _MIN_SPARE_ROWS,
    Snapshot,
    _write_npy,
    atomic_write,
    codes_file,
    npz_bytes,
)
from stylefinder.recommend.projection import TUNED_FOLDER, Projection

log = logging.getLogger(__name__)

# data files carry a token of their writer: a space written again (by an engine of an older
# generation, or after a damage) never replaces a file that a newer space grew into
_FILE = re.compile(r"^(matrix|rows|codes|stage)-(\d+)-([0-9a-f]+)(-[0-9a-f]+)?\.np[yz]$")
_BLOCK_ROWS = 16_384  # rows projected or copied per step


def tuned_space(
    directory: str | Path,
    snapshot: Snapshot,
    projection: Projection,
    settings: CoarseSettings = DEFAULT_SETTINGS,
) -> tuple[np.ndarray, FirstStage | None]:
    """The projected matrix of `snapshot` and its first stage (None below `settings.min_rows`
    or when no stage reaches the target recall). They are read from `<directory>/tuned/`, or
    built and written there (see the module docstring).

    Example:
        >>> matrix, stage = tuned_space("shop", engine.snapshot, projection)  # doctest: +SKIP
    """
    folder = Path(directory) / TUNED_FOLDER
    if not projection.digest or not len(snapshot):
        return _in_memory(snapshot, projection, settings)
    generation = _matrix_generation(snapshot)
    name = f"{generation}-{projection.digest}"
    stored = _load(folder, name, projection.dim, rows=len(snapshot))
    if stored is not None:
        return stored.matrix, stored.stage
    try:
        folder.mkdir(exist_ok=True)
        previous = _previous(folder, generation, projection.digest, projection.dim)
        space = _extend(folder, generation, snapshot, projection, previous, settings)
        if space is None:
            space = _build(folder, generation, snapshot, projection, settings, previous)
    except OSError as exc:
        log.warning("%s: cannot write the tuned search space (%s); built in memory", folder, exc)
        return _in_memory(snapshot, projection, settings)
    _remove_stale(folder, generation, projection.digest, keep=set(space.files.values()))
    return space.matrix, space.stage


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
    stage: FirstStage | None
    info: dict  # the stage entry: kind ("" for none), pool, recall, changed_rows
    files: dict[str, str]  # "matrix", "rows", "codes" (when there is a stage): file names
    arrays: dict[str, np.ndarray]  # the stage's basis or scales, as stored
    digests: np.ndarray | None = None


def _in_memory(
    snapshot: Snapshot, projection: Projection, settings: CoarseSettings
) -> tuple[np.ndarray, FirstStage | None]:
    matrix = projection.apply(snapshot.vectors)
    return matrix, build_first_stage(matrix, settings)


def _load(folder: Path, name: str, width: int, rows: int | None = None) -> _Space | None:
    """The complete space `name` of projected rows `width` wide (and `rows` of them, when
    given); None when it is missing, damaged or of another size."""
    try:
        with np.load(folder / f"stage-{name}.npz", allow_pickle=False) as data:
            info = json.loads(str(data["info"]))
            arrays = {key: data[key] for key in data.files if key != "info"}
        files = info.get("files") or {  # as the first version wrote them
            "matrix": f"matrix-{name}.npy",
            "rows": f"rows-{name}.npy",
            "codes": f"codes-{name}.npy",
        }
        stored = np.load(folder / files["matrix"], mmap_mode="r", allow_pickle=False)
        count = int(info.get("rows", len(stored)))
        if rows is not None and count != rows:
            raise ValueError(f"{count} rows, expected {rows}")
        shape = (count, width)
        if stored.ndim != 2 or stored.shape[1] != width or stored.dtype != np.float32:
            raise ValueError(f"matrix {stored.shape} {stored.dtype}, expected {width} float32")
        if len(stored) < count:
            raise ValueError(f"matrix of {len(stored)} rows, expected {count}")
        matrix = stored[:count]
        if not info.get("kind"):
            return _Space(matrix, None, info, files, arrays)
        codes = np.load(folder / files["codes"], mmap_mode="r", allow_pickle=False)
        pool, recall = int(info["pool"]), info.get("recall_at_10")
        stage = stage_from_arrays(info["kind"], arrays, codes, pool, recall, shape)
        if stage is None:
            raise ValueError("first stage does not fit the matrix")
        return _Space(matrix, stage, info, files, arrays)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s: tuned space %s unreadable (%s); building it again", folder, name, exc)
        return None


def _previous(folder: Path, generation: int, key: str, width: int) -> _Space | None:
    """The newest complete space of another generation for the projection `key`, with its row
    digests; None when there is none."""
    generations = []
    for path in folder.glob(f"stage-*-{key}.npz"):
        match = _FILE.match(path.name)
        if match and int(match[2]) != generation:
            generations.append(int(match[2]))
    for other in sorted(generations, reverse=True):
        space = _load(folder, f"{other}-{key}", width)
        if space is None:
            continue
        try:
            digests = np.load(folder / space.files["rows"], allow_pickle=False)
        except (OSError, ValueError):
            continue
        if digests.dtype == np.uint64 and digests.shape == (len(space.matrix),):
            space.digests = digests
            return space
    return None


def _sources(digests: np.ndarray, previous: _Space | None) -> np.ndarray:
    """For each row, the row of `previous` with the same raw vector, or -1."""
    if previous is None or previous.digests is None or not len(previous.digests):
        return np.full(len(digests), -1, np.int64)
    order = np.argsort(previous.digests, kind="stable")
    ranked = previous.digests[order]
    at = np.minimum(np.searchsorted(ranked, digests), len(ranked) - 1)
    return np.where(ranked[at] == digests, order[at], -1).astype(np.int64)


def _extend(
    folder: Path,
    generation: int,
    snapshot: Snapshot,
    projection: Projection,
    previous: _Space | None,
    settings: CoarseSettings,
) -> _Space | None:
    """The space of `snapshot` as `previous` with the rows the index gained since projected into
    its spare rows; None when the index changed otherwise, there is no room, or the first stage
    should change: too many rows lack its codes, the rows drifted, or the index has grown big
    enough to need one."""
    if previous is None or "vectors" not in previous.info:
        return None
    start, total = len(previous.matrix), len(snapshot)
    if previous.info["vectors"] != snapshot.state.get("vectors") or start >= total:
        return None  # not only rows appended to the same matrix file
    stage = previous.stage
    changed = int(previous.info.get("changed_rows", 0)) + total - start
    if (
        changed > settings.max_drift * total
        or (stage is None and start < settings.min_rows <= total)
        or (stage is not None and total - len(stage) > _MAX_UNCOVERED_ROWS)
    ):
        return None
    path = folder / previous.files["matrix"]
    stored = np.load(path, mmap_mode="r+", allow_pickle=False)
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
    name = f"{generation}-{projection.digest}"
    digests = np.concatenate([previous.digests, row_digests(added)])
    files = {**previous.files, "rows": f"rows-{name}-{secrets.token_hex(4)}.npy"}
    atomic_write(folder / files["rows"], _npy_bytes(digests))
    info = {**previous.info, "rows": total, "changed_rows": changed, "files": files}
    atomic_write(folder / f"stage-{name}.npz", npz_bytes(info=json.dumps(info), **previous.arrays))
    matrix = np.load(path, mmap_mode="r", allow_pickle=False)[:total]
    log.info("tuned search space %s: %d rows projected into %s", name, total - start, path.name)
    return _Space(matrix, stage, info, files, previous.arrays, digests)


def _build(
    folder: Path,
    generation: int,
    snapshot: Snapshot,
    projection: Projection,
    settings: CoarseSettings,
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
    files = {key: f"{key}-{name}-{token}.npy" for key in ("matrix", "rows", "codes")}
    spare = max(_MIN_SPARE_ROWS, total // 4)  # for rows added later; unwritten, they take no disk
    shape = (total + spare, projection.dim)
    _write_npy(folder / files["matrix"], shape, fill, filled_rows=total)
    matrix = np.load(folder / files["matrix"], mmap_mode="r", allow_pickle=False)[:total]
    atomic_write(folder / files["rows"], _npy_bytes(digests))
    stage, info, arrays = _first_stage(folder / files["codes"], matrix, source, previous, settings)
    if stage is None:
        del files["codes"]
    info = {**info, "rows": total, "vectors": snapshot.state.get("vectors", ""), "files": files}
    atomic_write(folder / f"stage-{name}.npz", npz_bytes(info=json.dumps(info), **arrays))
    kept = int(np.count_nonzero(source >= 0))
    log.info("tuned search space %s: %d rows projected, %d copied", name, len(source) - kept, kept)
    return _Space(matrix, stage, info, files, arrays, digests)


def _first_stage(
    codes_path: Path,
    matrix: np.ndarray,
    source: np.ndarray,
    previous: _Space | None,
    settings: CoarseSettings,
) -> tuple[FirstStage | None, dict, dict[str, np.ndarray]]:
    """The first stage for `matrix`: `previous`'s carried over while few rows changed since it
    was fitted (as commits do), else fitted and calibrated; its entry and arrays."""
    total = len(matrix)
    kinds = stage_kinds(matrix.shape[1], settings)
    if total < settings.min_rows or not kinds:
        return None, {"kind": "", "changed_rows": 0}, {}
    kept = int(np.count_nonzero(source >= 0))
    changed = total - kept
    if previous is not None:
        removed = len(previous.matrix) - len(np.unique(source[source >= 0]))
        changed += removed + int(previous.info.get("changed_rows", 0))
        if changed <= settings.max_drift * total and len(previous.matrix) >= settings.min_rows:
            info = {**previous.info, "changed_rows": changed}
            if previous.stage is None:  # exact search was chosen: keep it until data drifts
                return None, info, {}
            stage = carry_stage(previous.stage, matrix, source, allocate=codes_file(codes_path))
            return stage, info, stage_arrays(stage)
    kind, stage, result, arrays = fit_first_stage(matrix, settings, allocate=codes_file(codes_path))
    if stage is None:
        codes_path.unlink(missing_ok=True)
        return None, {"kind": "", "changed_rows": 0}, {}
    info = {"kind": kind, "pool": result.pool, "recall_at_10": result.recall}
    return stage, {**info, "changed_rows": 0}, arrays


def _remove_stale(folder: Path, generation: int, key: str, keep: set[str]) -> None:
    """Delete the files of earlier generations and of other projections, but those in `keep`
    (the files the space of `generation` uses)."""
    for path in folder.iterdir():
        match = _FILE.match(path.name)
        stale = match and (int(match[2]) < generation or match[3] != key)
        if stale and path.name not in keep:
            with contextlib.suppress(OSError):  # in use elsewhere (Windows) or already gone
                path.unlink()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
