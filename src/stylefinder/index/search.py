"""Exact nearest-neighbour search: one matrix product, then a partial sort.

It reads the whole matrix (512 MB for 100k vectors of 1280 floats) for every query, so on large
indexes it is bound by memory bandwidth; those use a graph (`stylefinder.index.hnsw`) to find
candidates, which are then scored with these functions.

Example:
    >>> import numpy as np
    >>> vectors = np.eye(3, dtype=np.float32)
    >>> rows, scores = top_k(vectors, np.array([0, 1, 0], np.float32), k=2)
    >>> int(rows[0]), float(scores[0])
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
    back when fewer are eligible. Ties go to the lower row.

    Example:
        >>> import numpy as np
        >>> vectors = np.eye(3, dtype=np.float32)
        >>> top_k(vectors, vectors[0], 2, exclude=np.array([True, False, False]))[0].tolist()
        [1, 2]
    """
    query = np.asarray(query, np.float32)
    if exclude is not None:
        eligible = int(len(vectors) - np.count_nonzero(exclude))
    else:
        eligible = len(vectors)
    k = max(0, min(k, eligible))
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    scores = cosine_scores(vectors, query)
    if exclude is not None:
        scores[exclude] = -np.inf
    return best_rows(np.arange(len(scores)), scores, k)


def best_rows(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` best (rows, scores), by score then row; `rows` ascending.

    Example:
        >>> import numpy as np
        >>> best_rows(np.array([3, 5, 9]), np.array([0.2, 0.9, 0.9], np.float32), 2)[0].tolist()
        [5, 9]
    """
    k = min(k, len(scores))
    if k < len(scores):
        picked = np.argpartition(-scores, k - 1)[:k]
    else:
        picked = np.arange(len(scores))
    order = picked[np.lexsort((picked, -scores[picked]))]
    return rows[order].astype(np.int64), scores[order]
