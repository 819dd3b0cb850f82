"""Building an `HnswIndex`: the graph over every row, then its search width calibrated on the
index's own rows, the recall measured and recorded with its parameters.

Rows sampled as queries are searched exactly and through the graph; the smallest search width
whose mean recall@10 reaches the target is kept (`calibrate`), and how much wider a filtered
search must be is measured under a random filter (`calibrate_filter`).

Example:
    >>> index = build_hnsw(matrix, AnnSettings(kind="hnsw"))  # doctest: +SKIP
    >>> index.params["search_width"], index.params["recall_at_10"]  # doctest: +SKIP
    (48, 0.987)
"""

from __future__ import annotations

import time

import faiss
import numpy as np

from stylefinder.index.faiss_graph import add_in_steps, matrix_rows
from stylefinder.index.hnsw import CALIBRATED_K, HnswIndex
from stylefinder.index.vector_index import DEFAULT_ANN, AnnSettings

_TRAIN_ROWS = 65_536  # rows the int8 ranges are fitted on
_BLOCK_ROWS = 65_536  # rows scored per step while measuring recall
_POOLS = (10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256)  # candidates rescored
_FILTER_EXPONENTS = (0.25, 0.5, 0.75, 1.0)  # filtered width: search_width / share ** e
_K = CALIBRATED_K


def build_hnsw(
    vectors: np.ndarray,
    settings: AnnSettings = DEFAULT_ANN,
    *,
    progress: bool = False,
) -> HnswIndex:
    """A graph over every row of `vectors`, its search width calibrated (see `calibrate`).

    Example:
        >>> index = build_hnsw(matrix, AnnSettings(kind="hnsw"))  # doctest: +SKIP
    """
    started = time.perf_counter()
    n, dim = vectors.shape
    graph = faiss.IndexHNSWSQ(
        dim, faiss.ScalarQuantizer.QT_8bit, settings.degree, faiss.METRIC_INNER_PRODUCT
    )
    graph.hnsw.efConstruction = settings.build_width
    rng = np.random.default_rng(settings.seed)
    sample = np.sort(rng.choice(n, size=min(n, _TRAIN_ROWS), replace=False))
    graph.train(np.ascontiguousarray(vectors[sample], np.float32))
    add_in_steps(graph, range(n), matrix_rows(vectors), progress=progress)
    params = {
        "kind": HnswIndex.kind,
        "library": f"faiss {faiss.__version__}",
        "codes": "int8",
        "degree": settings.degree,
        "build_width": settings.build_width,
        "search_width": settings.search_widths[-1],
        "target_recall": settings.target_recall,
        "exact_filter_rows": settings.exact_filter_rows,
        "exact_filter_share": settings.exact_filter_share,
    }
    index = HnswIndex.over_new_graph(vectors, graph, params)
    if n > _K:
        width, pool, recall, queries = calibrate(index, vectors, settings)
        index.update_params(search_width=width, rescore=pool, recall_at_10=recall, queries=queries)
        filtered = calibrate_filter(index, vectors, settings)
        if filtered is not None:
            index.update_params(filter_exponent=filtered[0], filtered_recall_at_10=filtered[1])
    index.update_params(build_seconds=round(time.perf_counter() - started, 1))
    return index


def calibrate(
    index: HnswIndex, vectors: np.ndarray, settings: AnnSettings
) -> tuple[int, int, float, int]:
    """The search width and the number of its candidates to rescore for a recall@10 target:
    the smallest of `settings.search_widths` whose mean recall@10 against exact search reaches
    the target when all its candidates are rescored, and the fewest of those candidates (best
    first by int8 score) that still reach it. Returns (width, rescored, recall, queries):
    queries are rows sampled from `vectors`, each excluding itself. A result counts as found
    when its exact score reaches the 10th best exact score, so ties between duplicates are not
    misses. When no width reaches the target, the widest is kept (its recall recorded:
    `stylefinder info` shows it).

    Example:
        >>> calibrate(index, matrix, AnnSettings())  # doctest: +SKIP
        (48, 24, 0.986, 200)
    """
    n = len(vectors)
    rng = np.random.default_rng(settings.seed + 1)
    rows = np.sort(rng.choice(n, size=min(n, settings.queries), replace=False))
    asked = np.asarray(vectors[rows], np.float32)
    kth = _exact_kth_scores(vectors, asked, rows, _K)
    target = settings.target_recall
    recall: dict[int, float] = {}
    for width in settings.search_widths:
        pools = sorted({p for p in (*_POOLS, width) if _K <= p <= width})
        found = dict.fromkeys(pools, 0)
        for query, row, floor in zip(asked, rows, kth, strict=True):
            candidates = index.graph_rows(query, width, width + 1)
            candidates = candidates[candidates != row]
            exact = np.asarray(np.asarray(vectors[candidates], np.float32) @ query, np.float32)
            for pool in pools:
                best = np.sort(exact[:pool])[::-1][:_K]
                found[pool] += int(np.count_nonzero(best >= floor - 1e-6))
        recall = {pool: round(count / (_K * len(rows)), 4) for pool, count in found.items()}
        if recall[pools[-1]] >= target:
            pool = next(p for p in pools if recall[p] >= target)
            return width, pool, recall[pool], len(rows)
    widest = settings.search_widths[-1]
    return widest, widest, recall.get(widest, 0.0), len(rows)


def calibrate_filter(
    index: HnswIndex, vectors: np.ndarray, settings: AnnSettings
) -> tuple[float, float] | None:
    """How much wider a filtered graph search must be: the smallest exponent e of
    `_FILTER_EXPONENTS` for which searches of width `search_width / share ** e` reach
    `target_recall - 0.03` recall@10 under a random filter passing `share` of the rows: 10%,
    or just more than filters scored exactly pass (a random filter is the hardest kind: real
    ones, such as a category, pass rows near the query more often).
    Returns (e, recall), or None when filters that narrow are scored exactly anyway. The
    index is left with the exponent returned.

    Example:
        >>> calibrate_filter(index, matrix, AnnSettings())  # doctest: +SKIP
        (0.5, 0.961)
    """
    n = len(vectors)
    share = max(0.1, 1.1 * index.exact_filter_limit(n) / max(1, n))  # the graph's narrowest
    if share > 0.5 or n <= 10 * _K:
        return None
    rng = np.random.default_rng(settings.seed + 2)
    allowed = rng.random(n) < share
    rows = np.sort(rng.choice(np.flatnonzero(allowed), size=min(100, settings.queries)))
    asked = np.asarray(vectors[rows], np.float32)
    passing = np.flatnonzero(allowed)
    kth = _exact_kth_scores(vectors, asked, rows, _K, among=passing)
    target, recall = settings.target_recall - 0.03, 0.0
    for exponent in _FILTER_EXPONENTS:
        index.update_params(filter_exponent=exponent)
        found = 0
        for query, row, floor in zip(asked, rows, kth, strict=True):
            _, scores = index.search(query, _K, allowed=allowed, excluded=np.array([row]))
            found += int(np.count_nonzero(scores[0] >= floor - 1e-6))
        recall = round(found / (_K * len(rows)), 4)
        if recall >= target:
            return exponent, recall
    return _FILTER_EXPONENTS[-1], recall


def _exact_kth_scores(
    vectors: np.ndarray,
    asked: np.ndarray,
    rows: np.ndarray,
    k: int,
    *,
    among: np.ndarray | None = None,
):
    """The k-th best exact score of each query row among the other rows (of `among`, rows
    ascending, when given)."""
    best = np.full((len(rows), 0), -np.inf, np.float32)
    for start in range(0, len(vectors), _BLOCK_ROWS):
        scores = asked @ np.asarray(vectors[start : start + _BLOCK_ROWS], np.float32).T
        inside = np.flatnonzero((rows >= start) & (rows < start + scores.shape[1]))
        scores[inside, rows[inside] - start] = -np.inf
        if among is not None:
            keep = np.zeros(scores.shape[1], bool)
            part = among[(among >= start) & (among < start + scores.shape[1])]
            keep[part - start] = True
            scores[:, ~keep] = -np.inf
        merged = np.concatenate([best, scores], axis=1)
        if merged.shape[1] > k:
            merged = -np.partition(-merged, k - 1, axis=1)[:, :k]
        best = merged
    return np.min(best, axis=1)
