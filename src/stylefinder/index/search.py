"""Nearest-neighbour search: exact, or two-stage on large indexes, always with exact scores.

Exact search is one matrix product over the whole index, then a partial sort. It reads the whole
matrix (512 MB for 100k vectors of 1280 floats) for every query, so on large indexes it is bound
by memory bandwidth. A two-stage search first scans a compact copy of the matrix (`CoarseIndex`:
the top principal components, 10x smaller; or, where those cannot rank, `QuantizedIndex`: every
row in int8, 4x smaller), keeps the best `pool` candidates, then scores only those exactly
against the full rows. Returned scores are exact cosine similarities either way;
the pool size is calibrated when the index is committed (see `stylefinder.index.coarse`).

Example:
    >>> import numpy as np
    >>> vectors = np.eye(3, dtype=np.float32)
    >>> rows, scores = top_k(vectors, np.array([0, 1, 0], np.float32), k=2)
    >>> int(rows[0]), float(scores[0])
    (1, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stylefinder.index.quantized import negated_scores as quantized_scores

_BLOCK_ROWS = 262_144  # rows scored per step, so a memory-mapped matrix streams through RAM
POOL_K = 10  # a first stage's pool is calibrated for k = POOL_K; larger k scale it up


class FirstStage:
    """What a first search stage offers: a calibrated `pool` and approximate scores."""

    pool: int

    def pool_for(self, k: int) -> int:
        """Candidates to rescore for `k` results: the calibrated pool, scaled up for k > 10."""
        return max(self.pool, -(-self.pool * k // POOL_K), k)

    def matches(self, vectors: np.ndarray) -> bool:
        """Whether this stage was built for `vectors`' width and covers a prefix of its rows
        (rows added after it are scored exactly)."""
        raise NotImplementedError

    def negated_scores(self, query: np.ndarray) -> np.ndarray:
        """Approximate similarities of `query` with every row, negated (smaller is better)."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class CoarseIndex(FirstStage):
    """The first stage of a two-stage search: principal-component codes of every row.

    `codes[:, i] = basis @ (vectors[i] - mean)`, stored one component per row (dim, N) so that
    scoring a query is a single fast matrix-vector product. `basis @ query` scored against the
    codes approximates `query @ vectors[i]` up to a constant, good enough to pick candidates.
    `pool` is the number of candidates rescored exactly for k <= 10.

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
    codes: np.ndarray  # (d, N) float32, usually memory-mapped
    pool: int
    recall: float | None = None  # recall@10 measured at commit time, for information

    def __len__(self) -> int:
        return int(self.codes.shape[1])

    @property
    def dim(self) -> int:
        return int(self.codes.shape[0])

    def matches(self, vectors: np.ndarray) -> bool:
        return self.codes.shape[1] <= len(vectors) and self.basis.shape[1] == vectors.shape[1]

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """Codes (d, n) of unit rows `vectors` (n, D)."""
        return self.basis @ (np.asarray(vectors, np.float32) - self.mean).T

    def negated_scores(self, query: np.ndarray) -> np.ndarray:
        """Approximate similarities of `query` with every row, negated (smaller is better)."""
        return np.asarray(-(self.basis @ query) @ self.codes, np.float32)


@dataclass(frozen=True, eq=False)
class QuantizedIndex(FirstStage):
    """A first stage for vectors whose principal components cannot rank neighbours (a flat
    spectrum): every row in int8, one scale per dimension (see `stylefinder.index.quantized`).

    Example:
        >>> import numpy as np
        >>> from stylefinder.index.quantized import fit_scale, quantize
        >>> vectors = np.eye(4, dtype=np.float32)
        >>> scale = fit_scale(vectors)
        >>> stage = QuantizedIndex(scale, quantize(vectors, scale), pool=2)
        >>> top_k(vectors, vectors[1], 1, coarse=stage)[0].tolist()
        [1]
    """

    scale: np.ndarray  # (D,) float32: vectors ~= codes * scale
    codes: np.ndarray  # (N, D) int8, usually memory-mapped
    pool: int
    recall: float | None = None  # recall@10 measured at commit time, for information

    def __len__(self) -> int:
        return len(self.codes)

    def matches(self, vectors: np.ndarray) -> bool:
        return len(self.codes) <= len(vectors) and self.codes.shape[1] == vectors.shape[1]

    def negated_scores(self, query: np.ndarray) -> np.ndarray:
        return quantized_scores(self.codes, np.asarray(query, np.float32) * self.scale)


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
    coarse: FirstStage | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows most similar to `query`, best first, as (rows, scores).

    `exclude` is a boolean mask (N,) of rows that must not be returned. Fewer than `k` rows come
    back when fewer are eligible. With `coarse` (built for these `vectors`), candidates come from
    a two-stage search; scores are exact cosine similarities either way.

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
    if coarse is not None:
        if not coarse.matches(vectors):
            raise ValueError(
                f"{type(coarse).__name__} with codes {coarse.codes.shape} does not match "
                f"vectors {vectors.shape}"
            )
        pool = coarse.pool_for(k)
        if pool < eligible:
            return _two_stage(vectors, query, k, coarse, pool, exclude)
        if exclude is not None and eligible < len(vectors):  # few eligible rows: score just those
            rows = np.flatnonzero(~exclude)
            return _best(rows, np.asarray(vectors[rows] @ query, np.float32), k)
    scores = cosine_scores(vectors, query)
    if exclude is not None:
        scores[exclude] = -np.inf
    return _best(np.arange(len(scores)), scores, k)


def _two_stage(
    vectors: np.ndarray,
    query: np.ndarray,
    k: int,
    coarse: FirstStage,
    pool: int,
    exclude: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best `pool` eligible rows by approximate score, then the best `k` of them by exact score.
    Rows past those the first stage covers (added since its codes were written) are all
    candidates."""
    approx = coarse.negated_scores(query)
    covered = len(approx)
    if exclude is not None:
        approx[exclude[:covered]] = np.inf
    picked = np.argpartition(approx, min(pool, covered) - 1)[:pool] if covered else np.zeros(0, int)
    picked = picked[approx[picked] < np.inf]  # excluded rows, where few covered ones are left
    tail = np.arange(covered, len(vectors))
    if exclude is not None:
        tail = tail[~exclude[covered:]]
    candidates = np.sort(np.concatenate([picked, tail]))  # sorted: sequential reads
    return _best(candidates, np.asarray(vectors[candidates] @ query, np.float32), k)


def _best(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` best (rows, scores), by score then row; `rows` ascending, `k` <= eligible rows."""
    if k < len(scores):
        picked = np.argpartition(-scores, k - 1)[:k]
    else:
        picked = np.arange(len(scores))
    order = picked[np.lexsort((picked, -scores[picked]))]
    return rows[order].astype(np.int64), scores[order]
