"""Retrieval quality metrics over labeled vectors.

Example:
    >>> import numpy as np
    >>> vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    >>> float(precision_at_k(vectors, np.array(["a", "a", "b", "b"]), k=1))
    1.0
"""

from __future__ import annotations

import numpy as np

_BLOCK = 1024  # queries scored per step


def leave_one_out_neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """For each row, the rows of its `k` most similar other rows (cosine on unit vectors).

    Ties are broken by row number, so results are deterministic.
    """
    vectors = np.asarray(vectors, np.float32)
    n = len(vectors)
    k = min(k, n - 1)
    out = np.empty((n, k), np.int64)
    for start in range(0, n, _BLOCK):
        scores = vectors[start : start + _BLOCK] @ vectors.T
        rows = np.arange(start, start + len(scores))
        scores[np.arange(len(scores)), rows] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=1)
        out[start : start + len(scores)] = np.take_along_axis(part, order, axis=1)
    return out


def precision_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Mean share of each item's `k` nearest other items that carry its label."""
    labels = np.asarray(labels)
    neighbours = leave_one_out_neighbours(vectors, k)
    return float((labels[neighbours] == labels[:, None]).mean())


def all_correct_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Share of items whose `k` nearest other items all carry its label."""
    labels = np.asarray(labels)
    neighbours = leave_one_out_neighbours(vectors, k)
    return float((labels[neighbours] == labels[:, None]).all(axis=1).mean())
