"""Exact top-k search agrees with a full sort, honours exclusions and small catalogs."""

from __future__ import annotations

import numpy as np

from stylefinder.index.search import top_k


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_matches_a_full_sort():
    rng = np.random.default_rng(1)
    vectors = _unit(rng.normal(size=(500, 16)))
    query = _unit(rng.normal(size=16))
    rows, scores = top_k(vectors, query, 7)
    expected = np.argsort(-(vectors @ query), kind="stable")[:7]
    assert rows.tolist() == expected.tolist()
    assert np.all(np.diff(scores) <= 0)
    np.testing.assert_allclose(scores, (vectors @ query)[expected], rtol=1e-6)


def test_exclusions_and_small_catalogs():
    vectors = _unit(np.array([[1, 0], [1, 0.1], [0, 1]], np.float32))
    query = np.array([1, 0], np.float32)
    exclude = np.array([True, False, False])
    rows, _ = top_k(vectors, query, 5, exclude=exclude)
    assert rows.tolist() == [1, 2]  # fewer than k eligible: all of them, best first
    rows, _ = top_k(vectors, query, 2, exclude=np.ones(3, bool))
    assert rows.size == 0
    rows, _ = top_k(np.zeros((0, 2), np.float32), query, 3)
    assert rows.size == 0
