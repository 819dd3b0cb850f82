"""The searches every nearest-neighbour engine answers alike, whatever it keeps: known
neighbours with exact scores, excluded rows, filters narrow and wide, recall against exact search
on clustered data, k larger than the index. `SearchContract` holds them; a subclass per engine
sets `kind` and provides `build`, which returns something with `len()` and
`search(queries, k, *, allowed=None, excluded=None) -> (rows, scores)` (rows padded with -1,
scores with -inf). `VectorIndexContract` (test_vector_index.py) adds what a `VectorIndex` also
keeps (rows, save and load); the PostgreSQL catalog's pgvector search runs these through an
adapter (test_pg_vector_search.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DIM = 48


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


class SearchContract:
    """The searches every engine answers alike (see the module's docstring)."""

    kind: str
    exact: bool = False  # whether results equal exact search's (the reference)

    def build(self, vectors: np.ndarray, folder: Path):
        raise NotImplementedError

    def make(self, vectors: np.ndarray, folder: Path):
        return self.build(vectors, folder)

    def test_known_neighbours_and_exact_scores(self, tmp_path):
        vectors = twins(1000)
        index = self.make(vectors, tmp_path)
        assert len(index) == len(vectors)
        queries = np.arange(0, len(vectors), 2)
        rows, scores = index.search(vectors[queries], 3, excluded=None)
        assert (rows[:, 0] == queries).all()  # itself first, score 1
        assert (rows[:, 1] == queries + 1).all()  # then its twin
        for query, found, got in zip(vectors[queries], rows, scores, strict=True):
            np.testing.assert_allclose(got, vectors[found] @ query, rtol=0, atol=1e-5)
            assert (np.diff(got) <= 1e-7).all()

    def test_excluded_rows_never_come_back(self, tmp_path):
        vectors = twins(500)
        index = self.make(vectors, tmp_path)
        rows, _ = index.search(vectors[10], 5, excluded=np.array([10, 11]))
        assert 10 not in rows[0] and 11 not in rows[0] and (rows[0] >= 0).all()
        mask = np.zeros(len(vectors), bool)
        mask[::3] = True  # a third of the rows excluded, as a mask
        rows, _ = index.search(vectors[:20], 10, excluded=mask)
        assert not mask[rows].any() and (rows >= 0).all()

    def test_filter_leaving_fewer_than_k_rows(self, tmp_path):
        vectors = clustered(3000)
        index = self.make(vectors, tmp_path)
        allowed = np.array([5, 700, 2999])
        rows, scores = index.search(vectors[0], 10, allowed=allowed)
        assert sorted(rows[0][:3].tolist()) == [5, 700, 2999]
        assert (rows[0][3:] == -1).all() and np.isneginf(scores[0][3:]).all()
        np.testing.assert_allclose(scores[0][:3], vectors[rows[0][:3]] @ vectors[0], atol=1e-5)

    def test_wide_filter_returns_k_allowed_rows_with_high_recall(self, tmp_path):
        vectors = clustered(4000, seed=3)
        index = self.make(vectors, tmp_path)
        allowed = np.random.default_rng(0).random(len(vectors)) < 0.11
        found = 0
        for query in range(0, 4000, 40):
            rows, _ = index.search(vectors[query], 10, allowed=allowed)
            assert (rows >= 0).all() and allowed[rows].all()
            found += len(np.intersect1d(rows, exact_top(vectors, vectors[query], 10, allowed)))
        assert found / (100 * 10) >= 0.95

    def test_recall_against_exact_on_clustered_data(self, tmp_path):
        vectors = clustered(5000, seed=1)
        index = self.make(vectors, tmp_path)
        queries = clustered(100, seed=2)
        rows, _ = index.search(queries, 10)
        truth = [exact_top(vectors, query, 10) for query in queries]
        recall = np.mean([len(np.intersect1d(r, t)) / 10 for r, t in zip(rows, truth, strict=True)])
        assert recall >= 0.95
        if self.exact:
            assert recall == 1.0

    def test_k_larger_than_the_index_pads(self, tmp_path):
        vectors = clustered(40)
        index = self.make(vectors, tmp_path)
        rows, scores = index.search(vectors[0], 60)
        assert np.isneginf(scores[0][40:]).all()
        assert sorted(rows[0][:40].tolist()) == list(range(40))
        assert (rows[0][40:] == -1).all()
        rows, scores = index.search(vectors[:3], 0)
        assert rows.shape == scores.shape == (3, 0)
