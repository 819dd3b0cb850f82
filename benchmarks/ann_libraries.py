"""Which ANN library: faiss HNSW (float32, int8 and float16 codes) beside usearch (int8 and
float16), on the same clustered 1280-d vectors and queries, in one run.

Each graph has degree 16 and build width 64, is built with every core, and answers one query at
a time (one thread) for `pool` candidates that are then scored exactly against the full rows,
as stylefinder's index does; recall@10 counts a result as found when its exact score reaches
the 10th best exact score. Queries are index rows, each excluding itself.

Usage: python benchmarks/ann_libraries.py [--rows 50000] [--queries 200]
Writes benchmarks/results/ann_libraries.json and prints a table. Needs `pip install usearch`
(not a dependency of stylefinder).
"""

from __future__ import annotations

import argparse
import os
import time

import faiss
import numpy as np
from ann_latency import clustered
from common import environment, save

DEGREE, BUILD_WIDTH = 16, 64


def exact_kth(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    scores = x[rows] @ x.T
    scores[np.arange(len(rows)), rows] = -np.inf
    return -np.partition(-scores, 9, axis=1)[:, 9]


def measure(search, x: np.ndarray, rows: np.ndarray, kth: np.ndarray, pool: int) -> dict:
    """p50 latency (ms) and recall@10 of `search(query, count) -> candidate rows`."""
    latencies, found = [], 0
    for row, floor in zip(rows, kth, strict=True):
        started = time.perf_counter()
        candidates = search(x[row : row + 1], pool + 1)
        candidates = np.sort(candidates[(candidates != row) & (candidates >= 0)])
        best = np.sort(x[candidates] @ x[row])[::-1][:10]
        latencies.append(time.perf_counter() - started)
        found += int(np.count_nonzero(best >= floor - 1e-6))
    return {
        "p50_ms": round(float(np.median(latencies)) * 1e3, 3),
        "recall_at_10": round(found / (10 * len(rows)), 4),
    }


def faiss_rows(x: np.ndarray, rows, kth, name: str, index, pools) -> list[dict]:
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    index.hnsw.efConstruction = BUILD_WIDTH
    if not index.is_trained:
        index.train(x[:65_536])
    index.add(x)
    build = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    out = []
    for width in (32, 64):
        for pool in pools:
            params = faiss.SearchParametersHNSW(efSearch=max(width, pool + 1))

            def search(query, count, params=params):
                return index.search(query, count, params=params)[1][0]

            result = measure(search, x, rows, kth, pool)
            out.append(
                {
                    "library": name,
                    "build_s": round(build, 1),
                    "width": width,
                    "pool": pool,
                    **result,
                }
            )
            print(out[-1], flush=True)
    return out


def usearch_rows(x: np.ndarray, rows, kth, dtype: str, pools) -> list[dict]:
    from usearch.index import Index

    started = time.perf_counter()
    index = Index(
        ndim=x.shape[1], metric="ip", dtype=dtype, connectivity=DEGREE, expansion_add=BUILD_WIDTH
    )
    index.add(np.arange(len(x)), x, threads=os.cpu_count() or 1)
    build = time.perf_counter() - started
    out = []
    for width in (32, 64):
        index.expansion_search = width
        for pool in pools:

            def search(query, count):
                return np.asarray(index.search(query[0], count, threads=1).keys, np.int64)

            result = measure(search, x, rows, kth, pool)
            out.append(
                {
                    "library": f"usearch {dtype}",
                    "build_s": round(build, 1),
                    "width": width,
                    "pool": pool,
                    **result,
                }
            )
            print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/ann_libraries.json")
    args = parser.parse_args()
    x = clustered(args.rows, seed=1)
    rows = np.random.default_rng(5).choice(args.rows, args.queries, replace=False)
    kth = exact_kth(x, rows)
    dim, ip = x.shape[1], faiss.METRIC_INNER_PRODUCT
    pools = (10, 20, 40)
    found = []
    found += faiss_rows(x, rows, kth, "faiss float32", faiss.IndexHNSWFlat(dim, DEGREE, ip), pools)
    for name, kind in (
        ("int8", faiss.ScalarQuantizer.QT_8bit),
        ("float16", faiss.ScalarQuantizer.QT_fp16),
    ):
        graph = faiss.IndexHNSWSQ(dim, kind, DEGREE, ip)
        found += faiss_rows(x, rows, kth, f"faiss {name}", graph, pools)
    for dtype in ("i8", "f16"):
        found += usearch_rows(x, rows, kth, dtype, (20,))
    save(
        args.out,
        {
            **environment("faiss-cpu", "usearch", "numpy"),
            "rows": args.rows,
            "queries": args.queries,
            "results": found,
        },
    )
    print("| library | build s | width | pool | p50 ms | recall@10 |\n|---|--:|--:|--:|--:|--:|")
    for r in found:
        print(
            f"| {r['library']} | {r['build_s']} | {r['width']} | {r['pool']} | {r['p50_ms']} "
            f"| {r['recall_at_10']} |"
        )


if __name__ == "__main__":
    main()
