"""Building the first stage of the two-stage search: a PCA basis, row codes, a calibrated pool.

Image embeddings have a fast-decaying spectrum (the top 128 of 1280 principal components of
efficientnet-lite0 features hold 80% of the variance around the mean), so scores computed from
128 components rank the true neighbours among the first few hundred candidates. How many
candidates are needed depends on the data, so each commit that builds a basis measures it: rows
sampled as queries are searched exactly and in two stages, and the smallest pool whose mean
recall@10 reaches the target is kept. If none does (a flat spectrum, e.g. isotropic random
vectors), the commit tries int8 codes of the full rows instead (`stylefinder.index.quantized`,
4x smaller than the matrix), calibrated the same way; if those miss too, search stays exact.

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
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from stylefinder.index.quantized import fit_scale, quantize
from stylefinder.index.search import POOL_K, CoarseIndex, FirstStage, QuantizedIndex

_BLOCK_ROWS = 65_536  # rows encoded or scored per step while streaming the matrix


@dataclass(frozen=True)
class CoarseSettings:
    """When and how a commit builds the coarse stage (the defaults suit 1280-d image vectors).

    Example:
        >>> CoarseSettings(min_rows=1000, dim=16).min_rows  # what the tests use
        1000
    """

    min_rows: int = 20_000  # smaller indexes are searched exactly (a few ms anyway)
    dim: int = 128  # principal components kept; only built when dim <= vector dim / 2
    sample_rows: int = 10_000  # rows the basis is fitted on (recall as with 20k, half the time)
    queries: int = 200  # rows used as queries to measure recall
    target_recall: float = 0.99  # mean recall@10 the chosen pool must reach
    pools: tuple[int, ...] = (100, 200, 400, 800, 1600, 3200)  # tried in order, each <= rows / 8
    quantized: bool = True  # when principal components miss the target, try int8 codes
    max_drift: float = 0.05  # rows changed since the last fit, as a fraction, before refitting
    seed: int = 0


DEFAULT_SETTINGS = CoarseSettings()


@dataclass(frozen=True)
class Calibration:
    """The outcome of `calibrate`: the smallest pool reaching the target (None: none did)."""

    pool: int | None
    recall: float  # mean recall@10 at `pool`, or at the largest pool tried
    queries: int


def fit_basis(
    vectors: np.ndarray, dim: int, *, sample_rows: int = 10_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The mean (D,) and the top `dim` principal directions (dim, D) of a sample of rows.

    Uses a randomized subspace iteration on the sample covariance, which finds the same
    subspace as a full eigendecomposition (within 0.1% of its variance) in a fraction of the time.

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
    covariance = (sample.T @ sample) / max(1, len(sample))
    covariance = covariance.astype(np.float64)
    subspace = _orthonormal(rng.standard_normal((width, min(width, dim + 32))))
    for _ in range(4):
        subspace = _orthonormal(covariance @ subspace)
    values, vectors_small = np.linalg.eigh(subspace.T @ covariance @ subspace)
    order = np.argsort(-values)[:dim]
    basis = (subspace @ vectors_small[:, order]).T
    return mean.astype(np.float32), np.ascontiguousarray(basis, np.float32)


def _orthonormal(columns: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the span of `columns` (D, m), by Cholesky QR (two passes).

    Two matrix products and a small Cholesky factorization: much faster than a Householder QR on
    a busy machine (LAPACK's many small threaded steps), and as accurate after the second pass.
    Rank-deficient columns (fewer distinct rows than components) take the Householder QR.
    """
    try:
        for _ in range(2):
            factor = np.linalg.cholesky(columns.T @ columns)
            columns = columns @ np.linalg.inv(factor).T
    except np.linalg.LinAlgError:
        columns = np.linalg.qr(columns)[0]
    return columns


def encode(
    vectors: np.ndarray,
    mean: np.ndarray,
    basis: np.ndarray,
    *,
    out: np.ndarray | None = None,
    start: int = 0,
) -> np.ndarray:
    """Codes of `vectors` (n, D) written to columns `start:start+n` of `out` (dim, N).

    Example:
        >>> import numpy as np
        >>> encode(np.eye(3, dtype=np.float32), np.zeros(3, np.float32), np.eye(3)[:1]).shape
        (1, 3)
    """
    basis = np.asarray(basis, np.float32)
    if out is None:
        out = np.empty((len(basis), len(vectors)), np.float32)
    for offset in range(0, len(vectors), _BLOCK_ROWS):
        block = np.asarray(vectors[offset : offset + _BLOCK_ROWS], np.float32) - mean
        out[:, start + offset : start + offset + len(block)] = basis @ block.T
    return out


def calibrate(
    vectors: np.ndarray,
    coarse: FirstStage,
    *,
    queries: int = 200,
    pools: tuple[int, ...] = DEFAULT_SETTINGS.pools,
    target: float = 0.99,
    margin: float = 2.0,
    k: int = POOL_K,
    seed: int = 0,
) -> Calibration:
    """Measure recall@`k` of the two-stage search against exact search, for growing pools.

    `queries` rows, each excluding itself, are searched both ways; a result counts as found when
    its exact score reaches the k-th best exact score, so that ties between duplicate vectors do
    not count as misses. The pool returned is `margin` times the smallest pool reaching `target`
    (at most the largest of `pools`), because 200 queries only estimate the mean recall to about
    +-0.01 and rescoring more candidates is cheap; its own recall is measured and returned.

    Example:
        >>> calibrate(vectors, coarse).pool  # doctest: +SKIP
        200
    """
    n = len(vectors)
    if n <= k:
        raise ValueError(f"calibrating recall@{k} needs more than {k} rows, not {n}")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, queries), replace=False))
    asked = np.asarray(vectors[rows], np.float32)  # (q, D)
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


def stage_kinds(width: int, settings: CoarseSettings = DEFAULT_SETTINGS) -> tuple[str, ...]:
    """The kinds of first stage to try, in order, for vectors of `width` dimensions: none when
    the principal components would not be at most half as wide (narrow vectors scan fast
    anyway); else "pca", then "int8" where `settings.quantized`."""
    if min(settings.dim, width) * 2 > width:
        return ()
    return ("pca", "int8") if settings.quantized else ("pca",)


def fit_stage(
    kind: str,
    vectors: np.ndarray,
    settings: CoarseSettings = DEFAULT_SETTINGS,
    *,
    allocate=None,
) -> tuple[FirstStage, Calibration, dict[str, np.ndarray]]:
    """Fit a first stage of `kind` ("pca": `settings.dim` principal components; "int8": codes
    of the full rows) for `vectors` and calibrate it. Returns the stage (with the calibrated
    pool when one reached the target), the calibration and the arrays that define the codes
    (mean and basis, or scales). `allocate(shape, dtype, fill)` returns the array the codes are
    written to by `fill(array)`: in memory by default; commits write a memory-mapped file.

    Example:
        >>> stage, calibration, arrays = fit_stage("pca", vectors)  # doctest: +SKIP
        >>> calibration.pool, sorted(arrays)  # doctest: +SKIP
        (200, ['basis', 'mean'])
    """
    allocate = allocate or _in_memory
    if kind == "int8":
        scale = fit_scale(vectors)
        codes = allocate(vectors.shape, np.int8, lambda out: quantize(vectors, scale, out=out))
        stage: FirstStage = QuantizedIndex(scale, codes, pool=1)
        arrays = {"scale": scale}
    else:
        dim = min(settings.dim, vectors.shape[1])
        mean, basis = fit_basis(vectors, dim, sample_rows=settings.sample_rows, seed=settings.seed)
        shape = (dim, len(vectors))
        codes = allocate(shape, np.float32, lambda out: encode(vectors, mean, basis, out=out))
        stage = CoarseIndex(mean, basis, codes, pool=1)
        arrays = {"mean": mean, "basis": basis}
    result = calibrate_for(vectors, stage, settings)
    if result.pool is not None:
        stage = replace(stage, pool=result.pool, recall=result.recall)
    return stage, result, arrays


def stage_arrays(stage: FirstStage) -> dict[str, np.ndarray]:
    """The arrays that define `stage`'s codes (mean and basis, or scales), as `fit_stage`
    returns them."""
    if isinstance(stage, QuantizedIndex):
        return {"scale": stage.scale}
    return {"mean": stage.mean, "basis": stage.basis}


def stage_from_arrays(
    kind: str,
    arrays: dict[str, np.ndarray],
    codes: np.ndarray,
    pool: int,
    recall: float | None,
    shape: tuple[int, int],
) -> FirstStage | None:
    """The stored first stage of `kind` for a matrix of `shape`, covering all its rows or a
    prefix of them; None when `arrays` and `codes` do not fit it (damaged or written for
    another matrix).

    Example:
        >>> stage_from_arrays("int8", {"scale": scale}, codes, 200, 0.99, (n, d))  # doctest: +SKIP
        QuantizedIndex(...)
    """
    rows, dim = shape
    if kind == "int8":
        scale = arrays.get("scale", np.zeros(0))
        fits = codes.ndim == 2 and codes.shape[0] <= rows and codes.shape[1] == dim
        if codes.dtype == np.int8 and fits and scale.shape == (dim,):
            return QuantizedIndex(scale, codes, pool, recall)
        return None
    mean, basis = arrays.get("mean", np.zeros(0)), arrays.get("basis", np.zeros((0, 0)))
    if (
        codes.dtype == np.float32
        and codes.ndim == 2
        and codes.shape[0] == len(basis)
        and codes.shape[1] <= rows
        and basis.shape[1:] == (dim,)
        and mean.shape == (dim,)
    ):
        return CoarseIndex(mean, basis, codes, pool, recall)
    return None


def carry_stage(
    old: FirstStage, vectors: np.ndarray, source: np.ndarray, *, allocate=None
) -> FirstStage:
    """`old`'s stage for a new matrix `vectors` whose row i was `old`'s row `source[i]` (-1: a
    new row): the basis or scales, pool and recall carry over; codes are copied, or encoded
    for new rows and rows `old` has no codes for. `allocate` as in `fit_stage`.

    Example:
        >>> stage = carry_stage(old, new_vectors, np.array([0, 1, 3, -1]))  # doctest: +SKIP
    """
    allocate = allocate or _in_memory
    source = np.asarray(source, np.int64)
    source = np.where(source < len(old), source, -1)  # rows past those `old` covers: encoded
    by_row = isinstance(old, QuantizedIndex)  # int8 codes are (N, D), PCA codes (d, N)

    def fill(out: np.ndarray) -> None:
        for start in range(0, len(source), _BLOCK_ROWS):
            part = source[start : start + _BLOCK_ROWS]
            new = np.flatnonzero(part < 0)
            # most blocks of a commit's matrix hold kept rows only: written as one slice
            kept = np.flatnonzero(part >= 0) if len(new) else slice(None)
            at = start + kept if len(new) else slice(start, start + len(part))
            if by_row:
                out[at] = old.codes[part[kept]]
            else:
                out[:, at] = old.codes[:, part[kept]]
            if len(new):
                rows = vectors[start + new]
                if by_row:
                    out[start + new] = quantize(rows, old.scale)
                else:
                    out[:, start + new] = encode(rows, old.mean, old.basis)

    if by_row:
        return replace(old, codes=allocate(vectors.shape, np.int8, fill))
    return replace(old, codes=allocate((old.dim, len(vectors)), np.float32, fill))


def _in_memory(shape: tuple[int, int], dtype, fill) -> np.ndarray:
    out = np.empty(shape, dtype)
    fill(out)
    return out


def build_first_stage(
    vectors: np.ndarray, settings: CoarseSettings = DEFAULT_SETTINGS
) -> FirstStage | None:
    """A calibrated first stage for `vectors`, built in memory (for matrices that are not
    committed, such as a tuned index's projected vectors): the first of `stage_kinds` that
    reaches the target recall; None below `settings.min_rows` or when none does.

    Example:
        >>> stage = build_first_stage(projected_matrix)  # doctest: +SKIP
        >>> type(stage).__name__, stage.pool  # doctest: +SKIP
        ('CoarseIndex', 200)
    """
    if len(vectors) < settings.min_rows:
        return None
    return fit_first_stage(vectors, settings)[1]


def fit_first_stage(
    vectors: np.ndarray, settings: CoarseSettings = DEFAULT_SETTINGS, *, allocate=None
) -> tuple[str, FirstStage | None, Calibration | None, dict[str, np.ndarray]]:
    """The first of `stage_kinds` that reaches the target recall, fitted and calibrated (see
    `fit_stage`): (kind, stage, calibration, arrays). When none does, the stage is None and
    the kind and calibration are the last ones tried ("" and None when there was no kind).

    Example:
        >>> kind, stage, calibration, arrays = fit_first_stage(vectors)  # doctest: +SKIP
        >>> kind, calibration.pool  # doctest: +SKIP
        ('pca', 200)
    """
    kind, result = "", None
    for kind in stage_kinds(vectors.shape[1], settings):
        stage, result, arrays = fit_stage(kind, vectors, settings, allocate=allocate)
        if result.pool is not None:
            return kind, stage, result, arrays
        del stage
    return kind, None, result, {}


def calibrate_for(vectors: np.ndarray, stage: FirstStage, settings: CoarseSettings) -> Calibration:
    """`calibrate` with `settings`' queries, target and seed, trying the pools up to rows / 8.

    Example:
        >>> calibrate_for(vectors, stage, DEFAULT_SETTINGS).pool  # doctest: +SKIP
        200
    """
    pools = tuple(p for p in settings.pools if p <= len(vectors) // 8) or settings.pools[:1]
    return calibrate(
        vectors,
        stage,
        queries=settings.queries,
        pools=pools,
        target=settings.target_recall,
        seed=settings.seed,
    )


def _exact_kth_scores(vectors: np.ndarray, asked: np.ndarray, rows: np.ndarray, k: int):
    """The k-th best exact score of each query row among the other rows."""
    best = np.full((len(rows), 0), -np.inf, np.float32)
    for start in range(0, len(vectors), _BLOCK_ROWS):
        scores = asked @ np.asarray(vectors[start : start + _BLOCK_ROWS], np.float32).T
        _hide_self(scores, rows, start)
        best = _keep_best(np.concatenate([best, scores], axis=1), k)[1]
    return np.min(best, axis=1)


def _coarse_candidates(coarse: FirstStage, asked: np.ndarray, rows: np.ndarray, pool: int):
    """For each query row, the `pool` other rows with the best approximate scores, best first."""
    if not isinstance(coarse, CoarseIndex):  # one query at a time through the stage's own scan
        found = np.empty((len(rows), pool), np.int64)
        for i, (query, row) in enumerate(zip(asked, rows, strict=True)):
            negated = coarse.negated_scores(query)
            negated[row] = np.inf
            best = np.argpartition(negated, pool - 1)[:pool]
            found[i] = best[np.lexsort((best, negated[best]))]
        return found
    projected = asked @ coarse.basis.T  # (q, d); the mean only shifts each query's scores
    best_rows = np.zeros((len(rows), 0), np.int64)
    best = np.zeros((len(rows), 0), np.float32)
    for start in range(0, len(coarse), _BLOCK_ROWS):
        scores = projected @ np.asarray(coarse.codes[:, start : start + _BLOCK_ROWS])
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
