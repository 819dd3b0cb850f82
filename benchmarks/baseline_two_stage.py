"""The earlier hand-written two-stage search (PCA codes scan, then exact rerank), numpy only.

Kept only to be measured beside the library vector index (`benchmarks/ann_latency.py`); the
package no longer uses it. Copied from `src/stylefinder/index/coarse.py` and
`src/stylefinder/index/search.py` at commit 5663d63, the principal-component path only (no int8
codes, no numba kernel, no store files): `fit_basis`, `encode`, `calibrate` with its pools,
`CoarseIndex` and the two-stage `top_k`, with exact scores after the approximate first stage.

How it worked: the top 128 principal components of the rows (fitted on a sample of 10,000) give
codes 10x smaller than the matrix; a query scans the codes, keeps the best `pool` candidates and
scores those exactly. The pool is calibrated on 200 rows used as queries, each excluding itself:
the smallest of `POOLS` (at most rows / 8) whose mean recall@10 reaches 0.99, then doubled.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> vectors = rng.normal(size=(2000, 32)).astype(np.float32) * np.geomspace(1, 0.01, 32)
    >>> vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    >>> mean, basis = fit_basis(vectors, 8)
    >>> coarse = CoarseIndex(mean, basis, encode(vectors, mean, basis), pool=1)
    >>> result = calibrate(vectors, coarse, pools=(50, 100, 200))
    >>> result.recall >= 0.99
    True
    >>> rows, scores = top_k(vectors, vectors[0], 3, coarse=replace(coarse, pool=result.pool))
    >>> int(rows[0]), round(float(scores[0]), 3)
    (0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

DIM = 128  # principal components kept
SAMPLE_ROWS = 10_000  # rows the basis is fitted on
QUERIES = 200  # rows used as queries to measure recall
TARGET_RECALL = 0.99  # mean recall@10 the chosen pool must reach
POOLS = (100, 200, 400, 800, 1600, 3200)  # tried in order, each <= rows / 8
POOL_K = 10  # the pool is calibrated for k = POOL_K; larger k scale it up
_ENCODE_ROWS = 65_536  # rows encoded or scored per step while streaming the matrix
_SCORE_ROWS = 262_144  # rows scored per step by exact search


@dataclass(frozen=True, eq=False)
class CoarseIndex:
    """The first stage: principal-component codes of every row, stored (dim, N).

    `codes[:, i] = basis @ (vectors[i] - mean)`; `basis @ query` scored against the codes
    approximates `query @ vectors[i]` up to a constant, good enough to pick candidates. `pool`
    is the number of candidates rescored exactly for k <= 10.

    Example:
        >>> import numpy as np
        >>> vectors = np.eye(4, dtype=np.float32)
        >>> mean = vectors.mean(0)
        >>> basis = np.eye(4, dtype=np.float32)[:2]
        >>> coarse = CoarseIndex(mean, basis, basis @ (vectors - mean).T, pool=2)
        >>> top_k(vectors, vectors[1], 1, coarse=coarse)[0].tolist()
        [1]
    """

    mean: np.ndarray  # (D,) float32
    basis: np.ndarray  # (d, D) float32, orthonormal rows
    codes: np.ndarray  # (d, N) float32
    pool: int
    recall: float | None = None  # recall@10 measured when calibrated, for information

    def __len__(self) -> int:
        return int(self.codes.shape[1])

    @property
    def dim(self) -> int:
        return int(self.codes.shape[0])

    def pool_for(self, k: int) -> int:
        """Candidates to rescore for `k` results: the calibrated pool, scaled up for k > 10."""
        return max(self.pool, -(-self.pool * k // POOL_K), k)

    def matches(self, vectors: np.ndarray) -> bool:
        """Whether the codes were built for `vectors`' width and cover a prefix of its rows."""
        return self.codes.shape[1] <= len(vectors) and self.basis.shape[1] == vectors.shape[1]

    def negated_scores(self, query: np.ndarray) -> np.ndarray:
        """Approximate similarities of `query` with every row, negated (smaller is better)."""
        return np.asarray(-(self.basis @ query) @ self.codes, np.float32)


@dataclass(frozen=True)
class Calibration:
    """The outcome of `calibrate`: the smallest pool reaching the target (None: none did)."""

    pool: int | None
    recall: float  # mean recall@10 at `pool`, or at the largest pool tried
    queries: int


def fit_basis(
    vectors: np.ndarray, dim: int, *, sample_rows: int = SAMPLE_ROWS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The mean (D,) and the top `dim` principal directions (dim, D) of a sample of rows,
    by a randomized subspace iteration on the sample covariance.

    Example:
        >>> import numpy as np
        >>> mean, basis = fit_basis(np.eye(8, dtype=np.float32), 2)
        >>> basis.shape, np.allclose(basis @ basis.T, np.eye(2), atol=1e-5)
        ((2, 8), True)
    """
    rng = np.random.default_rng(seed)
    n, width = vectors.shape
    rows = np.sort(rng.choice(n, size=min(n, sample_rows), replace=False))
    sample = np.asarray(vectors[rows], np.float32)
    mean = sample.mean(axis=0)
    sample -= mean
    covariance = ((sample.T @ sample) / max(1, len(sample))).astype(np.float64)
    subspace = _orthonormal(rng.standard_normal((width, min(width, dim + 32))))
    for _ in range(4):
        subspace = _orthonormal(covariance @ subspace)
    values, small = np.linalg.eigh(subspace.T @ covariance @ subspace)
    order = np.argsort(-values)[:dim]
    basis = (subspace @ small[:, order]).T
    return mean.astype(np.float32), np.ascontiguousarray(basis, np.float32)


def _orthonormal(columns: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the span of `columns` (D, m), by Cholesky QR (two passes);
    rank-deficient columns take the Householder QR."""
    try:
        for _ in range(2):
            factor = np.linalg.cholesky(columns.T @ columns)
            columns = columns @ np.linalg.inv(factor).T
    except np.linalg.LinAlgError:
        columns = np.linalg.qr(columns)[0]
    return columns


def encode(vectors: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Codes (dim, n) of `vectors` (n, D), encoded in blocks of rows.

    Example:
        >>> import numpy as np
        >>> encode(np.eye(3, dtype=np.float32), np.zeros(3, np.float32), np.eye(3)[:1]).shape
        (1, 3)
    """
    basis = np.asarray(basis, np.float32)
    out = np.empty((len(basis), len(vectors)), np.float32)
    for start in range(0, len(vectors), _ENCODE_ROWS):
        block = np.asarray(vectors[start : start + _ENCODE_ROWS], np.float32) - mean
        out[:, start : start + len(block)] = basis @ block.T
    return out


def calibrate(
    vectors: np.ndarray,
    coarse: CoarseIndex,
    *,
    queries: int = QUERIES,
    pools: tuple[int, ...] = POOLS,
    target: float = TARGET_RECALL,
    margin: float = 2.0,
    k: int = POOL_K,
    seed: int = 0,
) -> Calibration:
    """Recall@`k` of the two-stage search against exact search for growing pools: `queries`
    rows, each excluding itself; a result counts as found when its exact score reaches the k-th
    best exact score. Returns `margin` times the smallest pool reaching `target` (at most the
    largest of `pools`) with its own measured recall.

    Example:
        >>> calibrate(vectors, coarse).pool  # doctest: +SKIP
        200
    """
    n = len(vectors)
    if n <= k:
        raise ValueError(f"calibrating recall@{k} needs more than {k} rows, not {n}")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, queries), replace=False))
    asked = np.asarray(vectors[rows], np.float32)
    tried = sorted({min(p, n - 1) for p in pools})
    kth = _exact_kth_scores(vectors, asked, rows, k)
    candidates = _coarse_candidates(coarse, asked, rows, tried[-1])  # (q, widest), best first
    best = np.full((len(rows), k), -np.inf, np.float32)  # exact top-k among candidates so far
    done = 0

    def recall_at(pool: int) -> float:
        nonlocal done
        for i, query in enumerate(asked):
            new = np.sort(candidates[i, done:pool])
            scores = np.asarray(vectors[new] @ query, np.float32)
            best[i] = -np.sort(-np.concatenate([best[i], scores]))[:k]
        done = pool
        return round(float(np.mean(np.sum(best >= kth[:, None] - 1e-6, axis=1) / k)), 4)

    recall = 0.0
    for pool in tried:
        recall = recall_at(pool)
        if recall >= target:
            wider = min(int(np.ceil(pool * margin)), tried[-1])
            if wider > pool:
                pool, recall = wider, recall_at(wider)
            return Calibration(pool, recall, len(rows))
    return Calibration(None, recall, len(rows))


def fit_two_stage(vectors: np.ndarray, *, dim: int = DIM, seed: int = 0) -> CoarseIndex:
    """The first stage as a commit built it: basis, codes and a pool calibrated with the pools
    up to rows / 8. When no pool reaches the target (the old commit then tried int8 codes or
    kept exact search), the largest pool is kept and `recall` says what it reached.

    Example:
        >>> coarse = fit_two_stage(matrix)  # doctest: +SKIP
        >>> coarse.pool, coarse.recall  # doctest: +SKIP
        (400, 0.995)
    """
    mean, basis = fit_basis(vectors, min(dim, vectors.shape[1]), seed=seed)
    coarse = CoarseIndex(mean, basis, encode(vectors, mean, basis), pool=1)
    pools = tuple(p for p in POOLS if p <= len(vectors) // 8) or POOLS[:1]
    result = calibrate(vectors, coarse, pools=pools, seed=seed)
    return replace(coarse, pool=result.pool or max(pools), recall=result.recall)


def top_k(
    vectors: np.ndarray,
    query: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    coarse: CoarseIndex | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows most similar to `query`, best first, as (rows, exact scores); `exclude` is
    a bool mask (N,) of rows never returned. With `coarse`, candidates come from the two-stage
    search, unless the pool would hold every eligible row.

    Example:
        >>> import numpy as np
        >>> vectors = np.eye(3, dtype=np.float32)
        >>> top_k(vectors, vectors[0], 2, exclude=np.array([True, False, False]))[0].tolist()
        [1, 2]
    """
    query = np.asarray(query, np.float32)
    eligible = len(vectors) - (int(np.count_nonzero(exclude)) if exclude is not None else 0)
    k = max(0, min(k, eligible))
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    if coarse is not None:
        if not coarse.matches(vectors):
            raise ValueError(f"codes {coarse.codes.shape} do not match vectors {vectors.shape}")
        pool = coarse.pool_for(k)
        if pool < eligible:
            return _two_stage(vectors, query, k, coarse, pool, exclude)
        if exclude is not None and eligible < len(vectors):  # few eligible rows: just those
            rows = np.flatnonzero(~exclude)
            return _best(rows, np.asarray(vectors[rows] @ query, np.float32), k)
    scores = _cosine_scores(vectors, query)
    if exclude is not None:
        scores[exclude] = -np.inf
    return _best(np.arange(len(scores)), scores, k)


def _cosine_scores(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """`query` (D,) against every row of `vectors` (N, D), in blocks of rows."""
    if len(vectors) <= _SCORE_ROWS:
        return np.asarray(vectors @ query, np.float32)
    out = np.empty(len(vectors), np.float32)
    for start in range(0, len(vectors), _SCORE_ROWS):
        out[start : start + _SCORE_ROWS] = vectors[start : start + _SCORE_ROWS] @ query
    return out


def _two_stage(vectors, query, k, coarse, pool, exclude) -> tuple[np.ndarray, np.ndarray]:
    """Best `pool` eligible rows by approximate score, then the best `k` of them by exact
    score; rows past those the codes cover are all candidates."""
    approx = coarse.negated_scores(query)
    covered = len(approx)
    if exclude is not None:
        approx[exclude[:covered]] = np.inf
    picked = np.argpartition(approx, min(pool, covered) - 1)[:pool] if covered else np.zeros(0, int)
    picked = picked[approx[picked] < np.inf]
    tail = np.arange(covered, len(vectors))
    if exclude is not None:
        tail = tail[~exclude[covered:]]
    candidates = np.sort(np.concatenate([picked, tail]))  # sorted: sequential reads
    return _best(candidates, np.asarray(vectors[candidates] @ query, np.float32), k)


def _best(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` best (rows, scores), by score then row; `k` <= len(rows)."""
    if k < len(scores):
        picked = np.argpartition(-scores, k - 1)[:k]
    else:
        picked = np.arange(len(scores))
    order = picked[np.lexsort((picked, -scores[picked]))]
    return rows[order].astype(np.int64), scores[order]


def _exact_kth_scores(vectors: np.ndarray, asked: np.ndarray, rows: np.ndarray, k: int):
    """The k-th best exact score of each query row among the other rows."""
    best = np.full((len(rows), 0), -np.inf, np.float32)
    for start in range(0, len(vectors), _ENCODE_ROWS):
        scores = asked @ np.asarray(vectors[start : start + _ENCODE_ROWS], np.float32).T
        _hide_self(scores, rows, start)
        best = _keep_best(np.concatenate([best, scores], axis=1), k)[1]
    return np.min(best, axis=1)


def _coarse_candidates(coarse: CoarseIndex, asked: np.ndarray, rows: np.ndarray, pool: int):
    """For each query row, the `pool` other rows with the best approximate scores, best first."""
    projected = asked @ coarse.basis.T  # (q, d); the mean only shifts each query's scores
    best_rows = np.zeros((len(rows), 0), np.int64)
    best = np.zeros((len(rows), 0), np.float32)
    for start in range(0, len(coarse), _ENCODE_ROWS):
        scores = projected @ np.asarray(coarse.codes[:, start : start + _ENCODE_ROWS])
        _hide_self(scores, rows, start)
        ids = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        picked, best = _keep_best(np.concatenate([best, scores], axis=1), pool)
        best_rows = np.take_along_axis(np.concatenate([best_rows, ids], axis=1), picked, axis=1)
    order = np.argsort(-best, axis=1, kind="stable")
    return np.take_along_axis(best_rows, order, axis=1)


def _hide_self(scores: np.ndarray, rows: np.ndarray, start: int) -> None:
    """Set each query row's score against itself (in this block of columns) to -inf."""
    inside = np.flatnonzero((rows >= start) & (rows < start + scores.shape[1]))
    scores[inside, rows[inside] - start] = -np.inf


def _keep_best(scores: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the `count` largest entries of each row (unordered)."""
    if scores.shape[1] <= count:
        picked = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    else:
        picked = np.argpartition(-scores, count - 1, axis=1)[:, :count]
    return picked, np.take_along_axis(scores, picked, axis=1)
