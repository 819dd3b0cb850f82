"""The index never loses data silently: restore points, full disks and damaged manifests."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from stylefinder.errors import DamagedIndexError, IndexStateError, NoSpaceError
from stylefinder.index.header import MANIFEST_FILE
from stylefinder.index.store import IndexStore
from stylefinder.types import EmbeddingSpace, Item

DIM = 1280
SPACE = EmbeddingSpace("test-net", "gem", "abc123", DIM)


def _vectors(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _put(writer, ids: list[str], vectors: np.ndarray) -> None:
    for item_id, vector in zip(ids, vectors, strict=True):
        writer.put(Item(item_id, f"{item_id}.png", f"hash-{item_id}"), vector)


def _matrix(store: IndexStore) -> dict[str, np.ndarray]:
    snap = store.snapshot()
    return {item.id: np.array(snap.vectors[row]) for row, item in enumerate(snap.items)}


def test_restore_brings_back_the_generation_before_a_run_and_a_second_restore_undoes_it(
    tmp_path: Path,
):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    first = [f"a{n}" for n in range(12)]
    with store.writer(keep_restore_point=True) as writer:
        _put(writer, first, _vectors(12, 0))
    before = _matrix(store)
    with store.writer(keep_restore_point=True) as writer:  # a run that removes everything
        for item_id in first:
            writer.remove(item_id)
        _put(writer, ["b0", "b1"], _vectors(2, 1))
        writer.commit()
        _put(writer, ["b2"], _vectors(1, 2))  # a checkpoint: the restore point stays the first
    assert len(store.snapshot()) == 3
    point = store.restore_point()
    assert point is not None and point.items == 12

    with store.writer() as writer:
        writer.restore()
    after = _matrix(store)
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[key], before[key]) for key in before)

    with store.writer() as writer:  # the undone run is the restore point now
        writer.restore()
    assert sorted(_matrix(store)) == ["b0", "b1", "b2"]


def test_additions_after_a_restore_never_overwrite_the_restore_points_rows(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer() as writer:
        _put(writer, [f"a{n}" for n in range(10)], _vectors(10, 0))
    with store.writer(keep_restore_point=True) as writer:  # appended into the spare rows
        _put(writer, ["x0", "x1", "x2"], _vectors(3, 1))
    grown = _matrix(store)
    with store.writer() as writer:
        writer.restore()  # 10 items, same matrix file; the 13-item generation is the point now
    with store.writer() as writer:  # an API-style addition: must not write rows 10..12
        _put(writer, ["y0", "y1", "y2"], _vectors(3, 2))
    with store.writer() as writer:
        writer.restore()
    back = _matrix(store)
    assert back.keys() == grown.keys()
    assert all(np.array_equal(back[key], grown[key]) for key in grown)


def test_without_a_restore_point_restore_says_when_one_is_kept(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with pytest.raises(IndexStateError, match="no earlier generation"), store.writer() as writer:
        writer.restore()


def test_a_damaged_manifest_names_the_file_and_the_rebuild(tmp_path: Path, capsys):
    from stylefinder.cli import main

    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer() as writer:
        _put(writer, ["a"], _vectors(1, 0))
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (tmp_path / "ix" / f"{MANIFEST_FILE}{suffix}").unlink()
    (tmp_path / "ix" / MANIFEST_FILE).write_bytes(np.random.default_rng(0).bytes(8192))
    with pytest.raises(DamagedIndexError, match=r"manifest\.sqlite.*--rebuild"):
        IndexStore.open(tmp_path / "ix").snapshot()

    assert main(["info", "--index", str(tmp_path / "ix")]) == 1
    err = capsys.readouterr().err
    assert "damaged" in err and "manifest.sqlite" in err and "--rebuild" in err
    assert "Traceback" not in err and "sqlite3" not in err


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MB tmpfs, mounted for the test (needs root; skipped where mounting is refused)."""
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    """Fill `disk` up to `leave` free bytes with one file; returns it."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave, 0))
    return filler


def test_a_full_disk_is_a_clear_error_that_keeps_the_index_and_leaves_no_temp_file(
    small_disk: Path, capsys
):
    from stylefinder.cli import main

    store = IndexStore.create(small_disk / "ix", SPACE)
    with store.writer() as writer:
        _put(writer, [f"a{n}" for n in range(20)], _vectors(20, 0))
    before = _matrix(store)
    filler = _fill(small_disk, leave=200_000)

    full = r"no space left on tmpfs .*needs 1\.\d MB"
    # into the spare rows, through a memory map: a SIGBUS once
    with pytest.raises(NoSpaceError, match=full), store.writer() as writer:
        _put(writer, [f"b{n}" for n in range(300)], _vectors(300, 1))
    # a removal rewrites the matrix into a new file
    with pytest.raises(NoSpaceError, match="no space left on tmpfs"), store.writer() as writer:
        writer.remove("a0")
        _put(writer, [f"b{n}" for n in range(300)], _vectors(300, 1))
    assert not [p.name for p in (small_disk / "ix").iterdir() if p.name.endswith(".tmp")]
    after = _matrix(store)
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[key], before[key]) for key in before)
    assert main(["info", "--index", str(small_disk / "ix")]) == 0
    assert "items" in capsys.readouterr().out

    filler.unlink()
    with store.writer() as writer:
        _put(writer, [f"b{n}" for n in range(300)], _vectors(300, 1))
    assert len(store.snapshot()) == 320


def test_a_vector_file_that_keeps_disappearing_says_what_to_do(tmp_path: Path, monkeypatch):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer() as writer:
        _put(writer, ["a"], _vectors(1, 0))
    for path in (tmp_path / "ix").glob("vectors-*.npy"):
        path.unlink()  # as a sync tool or another process would, under every read
    with pytest.raises(IndexStateError, match="keeps disappearing") as caught:
        store.snapshot()
    assert "Stop other writers" in str(caught.value) and "--rebuild" in str(caught.value)
