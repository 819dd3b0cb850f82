"""Exact nearest-neighbour search: one matrix product over the whole index, then a partial sort.

Example:
    >>> import numpy as np
    >>> vectors = np.eye(3, dtype=np.float32)
    >>> rows, scores = top_k(vectors, np.array([0, 1, 0], np.float32), k=2)
    >>> rows[0], float(scores[0])
    (1, 1.0)
"""

from __future__ import annotations

import numpy as np

_BLOCK_ROWS = 262_144  # rows scored per step, so a memory-mapped matrix streams through RAM


def cosine_scores(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine similarity of a unit `query` (D,) with every unit row of `vectors` (N, D)."""
    query = np.asarray(query, np.float32)
    if len(vectors) <= _BLOCK_ROWS:
        return np.asarray(vectors @ query, np.float32)
    out = np.empty(len(vectors), np.float32)
    for start in range(0, len(vectors), _BLOCK_ROWS):
        out[start : start + _BLOCK_ROWS] = vectors[start : start + _BLOCK_ROWS] @ query
    return out


def top_k(
    vectors: np.ndarray,
    query: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows most similar to `query`, best first, as (rows, scores).

    `exclude` is a boolean mask (N,) of rows that must not be returned. Fewer than `k` rows come
    back when fewer are eligible.
    """
    scores = cosine_scores(vectors, query)
    if exclude is not None:
        scores[exclude] = -np.inf
        eligible = int(len(scores) - np.count_nonzero(exclude))
    else:
        eligible = len(scores)
    k = max(0, min(k, eligible))
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    if k < len(scores):
        candidates = np.argpartition(-scores, k - 1)[:k]
    else:
        candidates = np.arange(len(scores))
    order = candidates[np.lexsort((candidates, -scores[candidates]))]
    return order.astype(np.int64), scores[order]
