"""The index directory: atomic commits, consistent snapshots, locking, refusing other spaces."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stylefinder.errors import IndexStateError, UnknownItemError
from stylefinder.index.header import HEADER_FILE
from stylefinder.index.store import IndexStore
from stylefinder.types import EmbeddingSpace, Item

SPACE = EmbeddingSpace("test-net", "gem", "abc123", 4)


def _vec(*values: float) -> np.ndarray:
    v = np.array(values, np.float32)
    return v / np.linalg.norm(v)


def _item(item_id: str, **metadata: str) -> Item:
    return Item(item_id, f"{item_id}.png", f"hash-{item_id}", metadata=dict(metadata))


def test_put_commit_snapshot_remove(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer() as writer:
        writer.put(_item("a", category="Dress"), _vec(1, 0, 0, 0))
        writer.put(_item("b"), _vec(0, 1, 0, 0))
    snap = store.snapshot()
    assert [i.id for i in snap.items] == ["a", "b"]
    assert snap.items[0].metadata == {"category": "Dress"}
    np.testing.assert_allclose(snap.vectors[1], _vec(0, 1, 0, 0))
    assert isinstance(snap.vectors, np.memmap)  # memory-mapped, not read into RAM
    with store.writer() as writer:
        writer.remove("a")
        writer.put(_item("c"), _vec(0, 0, 1, 0))
        writer.put(_item("b", category="Top"), None)  # metadata only: keeps its vector
    snap = IndexStore.open(tmp_path / "ix").snapshot()
    assert sorted(snap.row_of) == ["b", "c"]
    b = snap.row_of["b"]
    assert snap.items[b].metadata == {"category": "Top"}
    np.testing.assert_allclose(snap.vectors[b], _vec(0, 1, 0, 0))
    np.testing.assert_allclose(snap.vectors[snap.row_of["c"]], _vec(0, 0, 1, 0))
    assert snap.generation == 2
    assert len(list((tmp_path / "ix").glob("vectors-*.npy"))) <= 2  # old generations cleaned


def test_a_metadata_only_commit_keeps_the_vector_file(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer() as writer:
        writer.put(_item("a"), _vec(1, 0, 0, 0))
        writer.put(_item("b"), _vec(0, 1, 0, 0))
    before = store.snapshot()
    reader_rows = np.array(before.vectors)
    with store.writer() as writer:  # e.g. colours named after indexing
        writer.put(_item("b", colours="red"), None)
    after = store.snapshot()
    assert after.generation == before.generation + 1
    assert after.state["vectors"] == before.state["vectors"]  # not rewritten
    assert [i.id for i in after.items] == ["a", "b"]  # rows keep their order
    assert after.items[1].metadata == {"colours": "red"}
    np.testing.assert_array_equal(after.vectors, reader_rows)
    np.testing.assert_array_equal(before.vectors, reader_rows)  # an open reader is unaffected
    with store.writer() as writer:  # a new vector writes a new matrix again
        writer.put(_item("a"), _vec(0, 0, 1, 0))
    assert store.snapshot().state["vectors"] != before.state["vectors"]
    assert len(store.snapshot()) == 2


def test_an_exception_discards_staged_work(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with pytest.raises(RuntimeError), store.writer() as writer:
        writer.put(_item("a"), _vec(1, 0, 0, 0))
        raise RuntimeError("boom")
    assert len(store.snapshot()) == 0


def test_a_failed_commit_leaves_the_previous_generation(tmp_path: Path, monkeypatch):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer() as writer:
        writer.put(_item("a"), _vec(1, 0, 0, 0))
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith(".npy"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"), store.writer() as writer:
        writer.put(_item("b"), _vec(0, 1, 0, 0))
        writer.remove("a")  # rows renumbered: a new matrix file
    monkeypatch.undo()
    snap = IndexStore.open(tmp_path / "ix").snapshot()
    assert [i.id for i in snap.items] == ["a"]
    assert not list((tmp_path / "ix").glob("*.tmp"))

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)  # an addition, written in the spare rows
    with pytest.raises(OSError, match="disk full"), store.writer() as writer:
        writer.put(_item("b"), _vec(0, 1, 0, 0))
    monkeypatch.undo()
    snap = IndexStore.open(tmp_path / "ix").snapshot()
    assert [i.id for i in snap.items] == ["a"] and snap.vectors.tolist() == [[1, 0, 0, 0]]
    with store.writer() as writer:  # the next commit writes over the uncommitted row
        writer.put(_item("c"), _vec(0, 0, 1, 0))
    snap = store.snapshot()
    assert [i.id for i in snap.items] == ["a", "c"]
    assert snap.vectors.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]


def test_bad_input_is_refused(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer() as writer:
        with pytest.raises(ValueError, match="4 finite floats"):
            writer.put(_item("a"), np.array([1, 2, 3], np.float32))
        with pytest.raises(ValueError, match="finite"):
            writer.put(_item("a"), np.array([np.nan, 0, 0, 1], np.float32))
        with pytest.raises(UnknownItemError, match="no vector"):
            writer.put(_item("a"), None)
        with pytest.raises(UnknownItemError, match="no item 'zzz'"):
            writer.remove("zzz")


def test_open_errors(tmp_path: Path):
    with pytest.raises(IndexStateError, match="no index at"):
        IndexStore.open(tmp_path / "nothing")
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with pytest.raises(IndexStateError, match="already exists"):
        IndexStore.create(tmp_path / "ix", SPACE)
    other = EmbeddingSpace("other-net", "gem", "abc123", 4)
    with pytest.raises(
        IndexStateError, match=r"built with test-net .* but the query uses other-net"
    ):
        IndexStore.open_or_create(tmp_path / "ix", other)
    (tmp_path / "ix" / HEADER_FILE).write_text("{not json")
    with pytest.raises(IndexStateError, match="damaged"):
        IndexStore.open(tmp_path / "ix")
    header = dict(store.header.__dict__, format=99)
    (tmp_path / "ix" / HEADER_FILE).write_text(json.dumps(header))
    with pytest.raises(IndexStateError, match="Upgrade stylefinder"):
        IndexStore.open(tmp_path / "ix")


def test_a_truncated_vector_file_is_reported(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer() as writer:
        writer.put(_item("a"), _vec(1, 0, 0, 0))
        writer.put(_item("b"), _vec(0, 1, 0, 0))
    (vectors,) = (tmp_path / "ix").glob("vectors-*.npy")
    vectors.write_bytes(vectors.read_bytes()[:-8])
    with pytest.raises(IndexStateError, match="damaged"):
        store.snapshot()


def test_second_writer_waits_then_gives_a_clear_error(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer(), pytest.raises(IndexStateError, match="another process is writing"):
        IndexStore.open(tmp_path / "ix").writer(timeout=0.2).__enter__()


def test_concurrent_writers_lose_nothing(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    errors: list[BaseException] = []

    def add(prefix: str) -> None:
        try:
            for n in range(5):
                with store.writer(timeout=30) as writer:
                    writer.put(_item(f"{prefix}{n}"), _vec(1, n, 0, 1))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(p,)) for p in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    snap = store.snapshot()
    assert sorted(i.id for i in snap.items) == sorted(f"{p}{n}" for p in "abcd" for n in range(5))
    for row, item in enumerate(snap.items):
        np.testing.assert_allclose(snap.vectors[row], _vec(1, int(item.id[1]), 0, 1), rtol=1e-6)


def test_an_index_from_before_the_source_column_is_upgraded(tmp_path: Path):
    import sqlite3

    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer() as writer:
        writer.put(_item("a"), _vec(1, 0, 0, 0))
    with sqlite3.connect(tmp_path / "ix" / "manifest.sqlite") as con:
        con.execute("ALTER TABLE items DROP COLUMN source")
    snap = IndexStore.open(tmp_path / "ix").snapshot()
    assert [(i.id, i.source) for i in snap.items] == [("a", "catalog")]


def test_additions_fill_the_spare_rows_and_earlier_snapshots_keep_theirs(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1300, 4)).astype(np.float32)
    with store.writer() as writer:
        for n in range(1000):
            writer.put(_item(f"i{n}"), vectors[n])
    first = store.snapshot()
    name = first.state["vectors"]
    assert np.load(tmp_path / "ix" / name, mmap_mode="r").shape == (2024, 4)  # 1,024 spare
    with store.writer() as writer:  # additions and a metadata change: no new matrix file
        for n in range(1000, 1300):
            writer.put(_item(f"i{n}"), vectors[n])
        writer.put(_item("i3", colour="red"), None)
    second = store.snapshot(previous=first)
    assert second.state["vectors"] == name and len(second) == 1300
    assert second.state["matrix_generation"] == str(second.generation)
    np.testing.assert_array_equal(second.vectors, vectors / 1)  # rows in place, none moved
    assert [item.id for item in second.items] == [f"i{n}" for n in range(1300)]
    assert second.items[3].metadata == {"colour": "red"}
    assert second.items[4] == first.items[4] and len(first) == 1000  # the old view's rows
    np.testing.assert_array_equal(first.vectors, vectors[:1000])  # the old view is intact
    with store.writer() as writer:  # beyond the spare rows: a new, larger file
        for n in range(1300, 2100):
            writer.put(_item(f"i{n}"), rng.normal(size=4).astype(np.float32))
    third = store.snapshot()
    assert third.state["vectors"] != name and len(third) == 2100
    np.testing.assert_array_equal(third.vectors[:1300], vectors)
    with store.writer() as writer:  # a removal empties its row: nothing renumbered
        writer.remove("i0")
    fourth = store.snapshot()
    assert fourth.state["vectors"] == third.state["vectors"] and fourth.size == 2100
    assert len(fourth) == 2099 and fourth.items.many([0, 1])[0] is None
    assert fourth.items[1].id == "i1" and fourth.row_of.get("i0") is None
    assert fourth.state["matrix_generation"] == third.state["matrix_generation"]
    found, _ = fourth.index.search(vectors[0] / np.linalg.norm(vectors[0]), 5)
    assert 0 not in found[0].tolist() and len(found[0][found[0] >= 0]) == 5
    assert IndexStore.open(tmp_path / "ix").snapshot().items[1299].id == "i1299"


def test_readers_see_whole_generations_while_additions_are_written(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)

    def vector_of(n: int) -> np.ndarray:  # each item's vector names it
        return np.array([n, 1, -n, 2], np.float32)

    with store.writer() as writer:
        for n in range(100):
            writer.put(_item(f"i{n}"), vector_of(n))
    done = threading.Event()
    problems: list[str] = []
    seen: set[int] = set()
    reads = [0]

    def read() -> None:
        snapshot = None
        while not done.is_set():
            try:
                snapshot = IndexStore.open(tmp_path / "ix").snapshot(previous=snapshot)
            except Exception as exc:  # any failure to read is a finding
                problems.append(repr(exc))
                return
            seen.add(len(snapshot))
            expected = np.stack([vector_of(int(item.id[1:])) for item in snapshot.items])
            if not np.array_equal(np.asarray(snapshot.vectors), expected):
                problems.append(f"generation {snapshot.generation}: rows do not match items")
            reads[0] += 1

    def wait_for_reads(count: int) -> None:  # reads overlap the next commit, but keep up
        target = reads[0] + count
        deadline = time.monotonic() + 30
        while reads[0] < target and not problems and time.monotonic() < deadline:
            time.sleep(0.001)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for batch in range(30):  # appends in place, then (past the spare rows) a new file
            with store.writer() as writer:
                for n in range(100 + 50 * batch, 150 + 50 * batch):
                    writer.put(_item(f"i{n}"), vector_of(n))
            wait_for_reads(2)  # the second read starts after this commit
    finally:
        done.set()
        reader.join()
    assert not problems, problems[:3]
    assert len(store.snapshot()) == 1600
    assert {100 + 50 * batch for batch in range(1, 31)} <= seen  # every generation was read


def test_a_writers_committed_snapshot_is_what_readers_read(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer() as writer:
        for n in range(5):
            writer.put(_item(f"i{n}", colour="red"), _vec(n + 1, 1, 0, 0))
        writer.commit()
        writer.put(_item("i9"), _vec(0, 0, 1, 0))  # an addition
        writer.put(_item("i2", colour="blue"), None)  # a metadata change
        writer.set_state("note", "kept")
        writer.commit()
        mine = writer.base
        assert [item.id for item in mine.items] == ["i0", "i1", "i2", "i3", "i4", "i9"]
        assert mine.items[2].metadata == {"colour": "blue"}
        assert mine.items[1].metadata == {"colour": "red"}
        writer.remove("i0")  # its row emptied
        writer.commit()
        after_removal = writer.base
    for committed, generation in ((mine, 2), (after_removal, 3)):
        assert committed.generation == generation
    read = IndexStore.open(tmp_path / "ix").snapshot()
    assert read.state == after_removal.state and read.state["note"] == "kept"
    assert list(read.items) == list(after_removal.items) and read.size == 6
    np.testing.assert_array_equal(read.vectors, after_removal.vectors)
    assert [item.id for item in read.items] == ["i1", "i2", "i3", "i4", "i9"]
    assert store.snapshot(previous=after_removal) is after_removal  # nothing new: kept as is


def test_an_earlier_snapshot_reads_its_rows_after_later_commits(tmp_path: Path):
    """Rows keep their meaning until a compaction: an earlier snapshot still finds its rows
    (an item removed since is gone, a new item past its rows is not seen); after a
    compaction renumbered the rows it says to read again."""
    from stylefinder.errors import StaleSnapshotError

    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer() as writer:
        for n in range(10):
            writer.put(_item(f"i{n}"), _vec(n + 1, 1, 0, 0))
    first = store.snapshot()
    with store.writer() as writer:
        writer.put(_item("new"), _vec(0, 0, 1, 0))
        writer.remove("i3")
    assert first.size == 10 and first.items[4].id == "i4" and "new" not in first.row_of
    assert first.items.many([3, 9, 10]) == [None, first.items[9], None]
    assert first.items.rows().tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    with store.writer() as writer:  # 3 of 11 rows empty: past the share, compacted
        writer.remove("i0")
        writer.remove("i1")
    latest = store.snapshot()
    assert latest.size == 8 and latest.items[0].id == "i2" and latest.row_of["new"] == 7
    with pytest.raises(StaleSnapshotError, match="read a new snapshot"):
        first.items[4]


def test_row_of_reads_ids_of_its_own_rows(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    with store.writer() as writer:
        writer.put(_item("a"), _vec(1, 0, 0, 0))
    first = store.snapshot()
    assert dict(first.row_of) == {"a": 0}
    with store.writer(previous=first) as writer:
        writer.put(_item("b"), _vec(0, 1, 0, 0))
        writer.put(_item("a", category="Top"), None)  # changed in place
    second = writer.base
    assert dict(second.row_of) == {"a": 0, "b": 1} and dict(first.row_of) == {"a": 0}
    assert second.items[0].metadata == {"category": "Top"} and second.items[1].id == "b"
    with store.writer(previous=second) as writer:
        writer.put(_item("c"), _vec(0, 0, 1, 0))
    third = writer.base
    assert dict(third.row_of) == {"a": 0, "b": 1, "c": 2} and "c" not in second.row_of
    assert third.row_of.get("c") == 2 and third.row_of.get("zz") is None
    assert dict(third.row_of) == dict(store.snapshot().row_of)  # what a reader reads
