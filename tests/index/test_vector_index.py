"""The contract every `VectorIndex` keeps, run on each implementation (the same cases): known
neighbours, exact scores, filters (narrow and wide), excluded rows, additions and removals that
survive save and load, renumbering, and recall against exact search on clustered data."""

from __future__ import annotations

import numpy as np
import pytest

from stylefinder.index.kinds import build_vector_index, load_vector_index
from stylefinder.index.vector_index import (
    AnnSettings,
    ExactIndex,
    VectorIndex,
    entry_files,
)

DIM = 48
SETTINGS = {
    "exact": AnnSettings(kind="exact"),
    "hnsw": AnnSettings(kind="hnsw", degree=16, queries=100, exact_filter_rows=50),
}


def clustered(n: int, *, seed: int = 0, clusters: int = 40) -> np.ndarray:
    """Unit vectors around cluster centres with a decaying spectrum, like image embeddings."""
    rng = np.random.default_rng(seed)
    scale = np.arange(1, DIM + 1) ** -0.8
    centres = np.random.default_rng(99).normal(size=(clusters, DIM)) * scale
    x = 0.5 + centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, DIM)) * scale
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def twins(n: int, *, seed: int = 0) -> np.ndarray:
    """`n` clustered rows, each followed by a near copy: row 2i's nearest other row is 2i+1."""
    base = clustered(n, seed=seed)
    copy = base + np.random.default_rng(seed + 1).normal(size=base.shape) * 1e-4
    copy /= np.linalg.norm(copy, axis=1, keepdims=True)
    out = np.empty((2 * n, DIM), np.float32)
    out[0::2], out[1::2] = base, copy
    return out


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int, mask=None) -> np.ndarray:
    scores = vectors @ query
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return np.argsort(-scores, kind="stable")[:k]


@pytest.fixture(params=sorted(SETTINGS))
def kind(request) -> str:
    return request.param


def build(kind: str, vectors: np.ndarray) -> VectorIndex:
    index = build_vector_index(vectors, SETTINGS[kind])
    assert index.kind == kind
    return index


def test_known_neighbours_and_exact_scores(kind):
    vectors = twins(1000)
    index = build(kind, vectors)
    assert len(index) == len(vectors)
    queries = np.arange(0, len(vectors), 2)
    rows, scores = index.search(vectors[queries], 3, excluded=None)
    assert (rows[:, 0] == queries).all()  # itself first, score 1
    assert (rows[:, 1] == queries + 1).all()  # then its twin
    for query, found, got in zip(vectors[queries], rows, scores, strict=True):
        np.testing.assert_allclose(got, vectors[found] @ query, rtol=0, atol=1e-5)
        assert (np.diff(got) <= 1e-7).all()


def test_excluded_rows_never_come_back(kind):
    vectors = twins(500)
    index = build(kind, vectors)
    rows, _ = index.search(vectors[10], 5, excluded=np.array([10, 11]))
    assert 10 not in rows[0] and 11 not in rows[0] and (rows[0] >= 0).all()
    mask = np.zeros(len(vectors), bool)
    mask[::3] = True  # a third of the rows excluded, as a mask
    rows, _ = index.search(vectors[:20], 10, excluded=mask)
    assert not mask[rows].any() and (rows >= 0).all()


def test_filter_leaving_fewer_than_k_rows(kind):
    vectors = clustered(3000)
    index = build(kind, vectors)
    allowed = np.array([5, 700, 2999])
    rows, scores = index.search(vectors[0], 10, allowed=allowed)
    assert sorted(rows[0][:3].tolist()) == [5, 700, 2999]
    assert (rows[0][3:] == -1).all() and np.isneginf(scores[0][3:]).all()
    np.testing.assert_allclose(scores[0][:3], vectors[rows[0][:3]] @ vectors[0], atol=1e-5)


def test_wide_filter_returns_k_allowed_rows_with_high_recall(kind):
    vectors = clustered(4000, seed=3)
    index = build(kind, vectors)
    allowed = np.random.default_rng(0).random(len(vectors)) < 0.11
    found = 0
    for query in range(0, 4000, 40):
        rows, _ = index.search(vectors[query], 10, allowed=allowed)
        assert (rows >= 0).all() and allowed[rows].all()
        found += len(np.intersect1d(rows, exact_top(vectors, vectors[query], 10, allowed)))
    assert found / (100 * 10) >= 0.95


def test_recall_against_exact_on_clustered_data(kind):
    vectors = clustered(5000, seed=1)
    index = build(kind, vectors)
    queries = clustered(100, seed=2)
    rows, _ = index.search(queries, 10)
    truth = [exact_top(vectors, query, 10) for query in queries]
    recall = np.mean([len(np.intersect1d(r, t)) / 10 for r, t in zip(rows, truth, strict=True)])
    assert recall >= 0.95
    if kind == "exact":
        assert recall == 1.0


def test_adds_and_removes_survive_save_and_load(kind, tmp_path):
    vectors = twins(800)
    index = build(kind, vectors)
    entry = index.save(tmp_path, "g1")
    assert all((tmp_path / name).is_file() for name in entry_files(entry))
    loaded = load_vector_index(tmp_path, entry, vectors)
    new = twins(5, seed=7)  # 10 rows, in twin pairs, after the 1600 there are
    rows = np.arange(len(vectors), len(vectors) + len(new))
    loaded.add(rows, new)
    loaded.remove(np.array([0, 1, 2]))
    assert len(loaded) == len(vectors) + len(new) - 3

    def check(index: VectorIndex) -> None:
        found, _ = index.search(new[0], 2)
        assert found[0].tolist() == [rows[0], rows[1]]  # an added row, then its twin
        found, _ = index.search(vectors[0], 5)
        assert not np.isin(found, [0, 1, 2]).any()
        assert index.search(vectors[3], 1)[0][0, 0] == 3

    check(loaded)
    entry = loaded.save(tmp_path, "g2")
    everything = np.concatenate([vectors, new])
    again = load_vector_index(tmp_path, entry, everything)
    check(again)
    assert len(again) == len(everything) - 3


def test_renumber_follows_a_compacted_matrix(kind):
    vectors = twins(600)
    index = build(kind, vectors)
    index.remove(np.array([4, 5]))
    keep = np.ones(len(vectors), bool)
    keep[[4, 5]] = False
    new_rows = np.where(keep, np.cumsum(keep) - 1, -1)
    compacted = vectors[keep]
    index.renumber(new_rows, compacted)
    assert len(index) == len(compacted)
    rows, scores = index.search(compacted[10], 2)
    assert rows[0].tolist() == [10, 11]
    np.testing.assert_allclose(scores[0], compacted[rows[0]] @ compacted[10], atol=1e-5)


def test_k_larger_than_the_index_pads(kind):
    vectors = clustered(40)
    index = build_vector_index(vectors, AnnSettings(kind=kind, queries=10))
    rows, scores = index.search(vectors[0], 60)
    assert np.isneginf(scores[0][40:]).all()
    assert sorted(rows[0][:40].tolist()) == list(range(40))
    assert (rows[0][40:] == -1).all()


def test_hnsw_records_its_parameters_and_reader_additions_are_scored_exactly(tmp_path):
    vectors = twins(1500)
    index = build("hnsw", vectors)
    params = index.params
    assert params["kind"] == "hnsw" and params["degree"] == 16
    assert params["search_width"] in SETTINGS["hnsw"].search_widths
    assert params["recall_at_10"] >= 0.98 and params["queries"] == 100
    entry = index.save(tmp_path, "g1")
    reader = load_vector_index(tmp_path, entry, vectors)  # memory-mapped, read-only
    new = twins(2, seed=5)
    reader.add(np.arange(3000, 3004), new)
    assert reader.params["uncovered"] == 4
    assert reader.search(new[2], 2)[0][0].tolist() == [3002, 3003]
    with pytest.raises(Exception, match="read-only"):
        reader.grow()


def test_hnsw_writer_grows_the_graph_and_keeps_unchanged_files(tmp_path):
    from stylefinder.index.hnsw import HnswIndex

    vectors = twins(1500)
    first = build("hnsw", vectors).save(tmp_path, "g1")
    everything = np.concatenate([vectors, twins(3, seed=9)])
    writer = HnswIndex.load(tmp_path, first, everything, writable=True)
    assert writer.uncovered == 6  # the matrix holds 6 rows the graph lacks
    assert writer.save(tmp_path, "g2", previous=first)["graph"] == first["graph"]
    assert writer.grow() == 6 and writer.uncovered == 0
    grown = writer.save(tmp_path, "g3", previous=first)
    assert grown["graph"] != first["graph"] and grown["nodes"] == 3006
    reader = load_vector_index(tmp_path, grown, everything)
    assert reader.search(everything[3000], 2)[0][0].tolist() == [3000, 3001]


def test_exact_index_is_the_default_below_min_rows():
    vectors = clustered(100)
    assert isinstance(build_vector_index(vectors, AnnSettings(min_rows=1000)), ExactIndex)
    assert build_vector_index(vectors, AnnSettings(min_rows=50)).kind == "hnsw"
    with pytest.raises(ValueError, match="unknown vector index"):
        AnnSettings(kind="annoy")
