"""Removed items leave empty rows until a compaction: no query returns them, counts skip them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stylefinder.engine import Engine
from stylefinder.index.store import IndexStore
from stylefinder.types import EmbeddingSpace, Item

SPACE = EmbeddingSpace("test", "gem", "w", 8)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def holed(tmp_path: Path) -> tuple[Engine, np.ndarray]:
    """30 items in two colours, then 5 of them removed (5 empty rows of 30: within the share
    kept before compacting)."""
    store = IndexStore.create(tmp_path / "ix", SPACE)
    vectors = _unit(np.random.default_rng(0), 30)
    with store.writer() as writer:
        for n, vector in enumerate(vectors):
            colour = "red" if n % 2 else "blue"
            writer.put(Item(f"i{n}", f"{n}.png", f"h{n}", metadata={"colour": colour}), vector)
    with store.writer() as writer:
        for n in (0, 5, 6, 11, 20):
            writer.remove(f"i{n}")
    return Engine(store), vectors


REMOVED = {"i0", "i5", "i6", "i11", "i20"}


def test_removals_leave_empty_rows_that_no_query_returns(holed):
    engine, vectors = holed
    snapshot = engine.snapshot
    assert (snapshot.size, len(snapshot), len(engine)) == (30, 25, 25)
    assert snapshot.items.many([5, 7]) == [None, snapshot.items[7]]
    with pytest.raises(KeyError):
        snapshot.items[5]
    for n in (1, 7, 12):  # the nearest first is the item itself: every other row comes back
        found = engine.similar(f"i{n}", k=29)
        assert len(found) == 24 and not {r.id for r in found} & REMOVED
    ranked = engine.search_vector(vectors[5], k=3)  # a removed item's own vector
    assert ranked[0].id != "i5" and len(ranked) == 3
    examples = engine.recommend_from_examples(["i1", "i2"], k=30, diversity=0.0)
    assert len(examples) == 23 and not {r.id for r in examples} & REMOVED
    page, total = engine.browse(limit=100)
    assert total == 25 and [i.id for i in page] == [
        f"i{n}" for n in range(30) if f"i{n}" not in REMOVED
    ]
    red, count = engine.browse(filters={"colour": "red"}, limit=100)
    assert (
        count == 13 and all(int(i.id[1:]) % 2 == 1 for i in red) and "i5" not in {i.id for i in red}
    )
    filtered = engine.similar("i1", k=29, filters={"colour": ["blue"]})
    assert {r.id for r in filtered} == {f"i{n}" for n in range(0, 30, 2)} - REMOVED
    assert engine.info().items == 25


def test_a_shoppers_recommendations_skip_empty_rows(holed):
    engine, _ = holed
    engine.record_event("u1", "i1", "like")
    engine.record_event("u1", "i3", "like")
    found = engine.recommend_for_user("u1", k=30, diversity=0.0)
    expected = {f"i{n}" for n in range(30)} - REMOVED - {"i1", "i3"}  # liked: not shown again
    assert {r.id for r in found} == expected and len(found) == 23
    cold = engine.recommend_for_user("nobody", k=30)
    assert len(cold) == 25 and not {r.id for r in cold} & REMOVED


def test_past_the_share_a_commit_compacts_and_renumbers(holed):
    engine, vectors = holed
    store = engine.store
    with store.writer() as writer:  # 7 of 30 rows empty: past 20%
        writer.remove("i1")
        writer.remove("i2")
    snapshot = store.snapshot()
    kept = [n for n in range(30) if f"i{n}" not in REMOVED | {"i1", "i2"}]
    assert snapshot.size == len(snapshot) == 23 and snapshot.state["layout"] == str(
        snapshot.generation
    )
    assert [item.id for item in snapshot.items] == [f"i{n}" for n in kept]
    np.testing.assert_array_equal(snapshot.vectors, vectors[kept])
    assert snapshot.index.live_rows().tolist() == list(range(23))
    assert engine.reload() and engine.similar("i3", k=1)[0].id != "i3"


def test_a_restore_brings_back_empty_rows_as_they_were(holed):
    engine, _ = holed
    store = engine.store
    with store.writer(keep_restore_point=True) as writer:
        writer.remove("i3")
    with store.writer() as writer:
        writer.restore()
    snapshot = store.snapshot()
    assert (snapshot.size, len(snapshot)) == (30, 25) and "i3" in snapshot.row_of
    assert not {r.id for r in Engine(store).similar("i1", k=29)} & REMOVED


def test_an_index_without_row_counts_in_its_state_is_counted(holed):
    """Indexes written before the state kept `matrix_rows` and `item_count` (no empty rows)."""
    engine, _ = holed
    store = engine.store
    with store.writer() as writer:  # compacted: no empty rows, like those indexes
        for n in (1, 2, 3):
            writer.remove(f"i{n}")
    with store.manifest.transaction() as con:
        con.execute("DELETE FROM state WHERE key IN ('matrix_rows', 'item_count', 'layout')")
    snapshot = IndexStore.open(store.directory).snapshot()
    assert snapshot.size == len(snapshot) == 22
    with store.writer() as writer:
        writer.remove("i4")
    after = store.snapshot()
    assert (after.size, len(after), after.state["item_count"]) == (22, 21, "21")


def test_an_engine_reads_again_when_another_writer_compacted(holed):
    engine, _ = holed
    before = engine.snapshot
    with IndexStore.open(engine.store.directory).writer() as writer:  # another process
        for n in (1, 2, 3):
            writer.remove(f"i{n}")
    assert engine.snapshot is before  # not reloaded yet: its rows are renumbered
    found = engine.similar("i7", k=30)
    assert engine.snapshot is not before and engine.snapshot.size == 22
    assert len(found) == 21 and not {r.id for r in found} & (REMOVED | {"i1", "i2", "i3"})
