"""Commits build the vector index: a graph from `min_rows` rows, carried over by later commits
(additions scored exactly, then grown into the graph; removals as tombstones, rebuilt past a
share), the kind asked for kept, damaged files searched exactly, restore bringing it back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stylefinder.engine import Engine
from stylefinder.index.hnsw import HnswIndex
from stylefinder.index.manifest import ann_entry
from stylefinder.index.store import IndexStore
from stylefinder.index.vector_index import AnnSettings, ExactIndex
from stylefinder.types import EmbeddingSpace, Item

DIM = 32
SPACE = EmbeddingSpace("test-net", "gem", "abc123", DIM)
ANN = AnnSettings(min_rows=1000, degree=16, queries=50, max_uncovered_rows=30)


def twins(n: int, seed: int = 0) -> np.ndarray:
    """2n unit vectors in near-identical pairs: row 2i's nearest other row is 2i+1."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, DIM)) * np.arange(1, DIM + 1) ** -0.7 + 0.3
    out = np.repeat(base, 2, axis=0) + rng.normal(size=(2 * n, DIM)) * 1e-4
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def commit(store: IndexStore, vectors: np.ndarray, start: int = 0, ann=ANN) -> None:
    with store.writer(ann=ann) as writer:
        for i, vector in enumerate(vectors, start=start):
            writer.put(Item(f"sku-{i}", f"{i}.png", f"hash-{i}"), vector)


def entry(store: IndexStore) -> dict:
    return ann_entry(store.snapshot().state.get("ann", ""))


def nearest(store: IndexStore, item_id: str, k: int = 1) -> list[str]:
    return [r.id for r in Engine(store).similar(item_id, k)]


@pytest.fixture
def big(tmp_path: Path) -> IndexStore:
    store = IndexStore.create(tmp_path / "ix", SPACE)
    commit(store, twins(600))  # 1200 rows: past min_rows
    return store


def test_a_large_commit_builds_a_graph_that_finds_the_neighbours(big: IndexStore):
    snapshot = big.snapshot()
    assert isinstance(snapshot.index, HnswIndex)
    info = entry(big)
    assert info["kind"] == "hnsw" and info["matrix"] == snapshot.state["vectors"]
    assert (big.directory / info["graph"]).is_file() and info["recall_at_10"] >= 0.98
    assert nearest(big, "sku-10") == ["sku-11"]
    assert Engine(big).info().search["search_width"] == info["search_width"]


def test_small_catalogs_are_searched_exactly(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", SPACE)
    commit(store, twins(100))
    assert isinstance(store.snapshot().index, ExactIndex) and entry(store) == {}
    assert Engine(store).info().search == {"kind": "exact"}


def test_additions_are_scored_exactly_then_grown_into_the_graph(big: IndexStore):
    graph = entry(big)["graph"]
    commit(big, twins(10, seed=1), start=1200)  # 20 rows: within max_uncovered_rows
    assert entry(big)["graph"] == graph
    assert big.snapshot().index.params["uncovered"] == 20
    assert nearest(big, "sku-1200") == ["sku-1201"]
    commit(big, twins(10, seed=2), start=1220)  # 40 uncovered now: the graph grows
    grown = entry(big)
    assert grown["graph"] != graph and grown["nodes"] == 1240
    assert big.snapshot().index.params["uncovered"] == 0
    assert nearest(big, "sku-1221") == ["sku-1220"]
    assert (big.directory / graph).exists()  # readers of the generation before may use it
    commit(big, twins(1, seed=3), start=1240)
    assert not (big.directory / graph).exists()  # then it is cleaned


def test_removals_leave_tombstones_then_rebuild_past_a_share(big: IndexStore):
    graph = entry(big)["graph"]
    with big.writer(ann=ANN) as writer:
        writer.remove("sku-11")
    after = entry(big)
    assert after["graph"] == graph and after["labels"] != entry_labels_before(graph)
    index = big.snapshot().index
    assert index.params["tombstones"] == 1
    assert nearest(big, "sku-10", 3)[0] != "sku-11"
    assert "sku-11" not in [r.id for r in Engine(big).similar("sku-10", 50)]
    with big.writer(ann=ANN) as writer:  # a quarter of the rows: past max_tombstone_share
        for i in range(0, 1200, 4):
            writer.remove(f"sku-{i}")
    rebuilt = entry(big)
    assert rebuilt["graph"] != graph and rebuilt["nodes"] == len(big.snapshot())
    assert big.snapshot().index.params["tombstones"] == 0
    assert nearest(big, "sku-2") == ["sku-3"]


def entry_labels_before(graph: str) -> str:
    return graph.replace("-graph.faiss", "-labels.npy")


def test_the_kind_asked_for_is_kept_by_later_writers(big: IndexStore):
    with big.writer(ann=AnnSettings(kind="exact")):
        pass  # no staged change: the index is still rebuilt as asked
    assert entry(big) == {} and isinstance(big.snapshot().index, ExactIndex)
    commit(big, twins(5, seed=3), start=1200, ann=None)  # a later writer: still exact
    assert entry(big) == {} and big.snapshot().state["ann_kind"] == "exact"
    assert not list(big.directory.glob("ann-*"))  # the graph's files are cleaned


def test_a_damaged_graph_is_searched_exactly(big: IndexStore, caplog):
    (big.directory / entry(big)["graph"]).write_bytes(b"not a faiss index")
    snapshot = big.snapshot()
    assert isinstance(snapshot.index, ExactIndex)
    assert "searching exactly" in caplog.text
    assert nearest(big, "sku-10") == ["sku-11"]
    commit(big, twins(1, seed=4), start=1200)  # the next commit builds it again
    assert isinstance(big.snapshot().index, HnswIndex)


def test_restore_brings_back_the_index_of_the_restore_point(big: IndexStore):
    before = entry(big)
    with big.writer(keep_restore_point=True, ann=ANN) as writer:
        for i in range(0, 1200, 3):
            writer.remove(f"sku-{i}")
    assert entry(big)["graph"] != before["graph"]
    with big.writer() as writer:
        writer.restore()
    assert entry(big) == before
    assert len(big.snapshot()) == 1200 and nearest(big, "sku-0") == ["sku-1"]


def test_auto_keeps_a_graph_while_the_catalog_shrinks_a_little(big: IndexStore):
    shrink = AnnSettings(min_rows=2000, degree=16, queries=50)  # 1200 rows: half of min_rows+
    with big.writer(ann=shrink) as writer:
        writer.remove("sku-0")
    assert entry(big)["kind"] == "hnsw"
    assert shrink.chosen_kind(900, current="hnsw") == "exact"


def test_state_entry_is_json(big: IndexStore):
    raw = big.snapshot().state["ann"]
    assert json.loads(raw)["kind"] == "hnsw"
