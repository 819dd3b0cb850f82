"""pgvector filtered search: p50 and recall@10 at several `hnsw.ef_search` for a filter that
passes ~11% and one that passes ~22% of the items, to choose `pg_search.FILTERED_CANDIDATES`
(the filtered candidates an HNSW walk keeps: ef_search = FILTERED_CANDIDATES / share).

Loads the catalog of `postgres_backend.py` (the same seeded, clustered vectors, items and
queries, HNSW m 16 / ef_construction as the product builds it). Each ef_search is searched
through the index (iterative scan, relaxed order) in rounds that visit every value in turn,
after one untimed pass, so that the machine's noise falls on all of them alike. Recall is
against exact numpy search over the items the filter passes.

Usage: python benchmarks/pg_filtered_ef.py [--items 100000] [--queries 100] [--rounds 3]
Writes benchmarks/results/pg_filtered_ef_<items>.json and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import environment, save
from postgres_backend import _passes, bench_catalog, catalog_item

import stylefinder.index.pg_search as pg_search
from stylefinder.recommend.pg_filters import PgFilters

FILTERS = {
    "category=Dress (~11%)": {"category": "Dress"},
    "category=Coat (~22%)": {"category": "Coat"},
}
EF_SEARCHES = (100, 150, 200, 250, 300, 400)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    pg_search.FILTERED_CANDIDATES = 1  # ef_search exactly as given, whatever the share
    rows_out = []
    with bench_catalog(args.items, args.dim, args.queries) as (catalog, vectors, queries):
        for name, filters in FILTERS.items():
            where = PgFilters(catalog).clause(filters)
            allowed = np.flatnonzero(
                [_passes(catalog_item(r), filters) for r in range(len(vectors))]
            )
            truth = [
                set(allowed[np.argsort(-(vectors[allowed] @ q))[:10]].tolist()) for q in queries
            ]
            times: dict[int, list[float]] = {ef: [] for ef in EF_SEARCHES}
            recalls: dict[int, list[float]] = {ef: [] for ef in EF_SEARCHES}
            for ef in EF_SEARCHES:  # untimed: the buffer cache warm, the filter counted
                for query in queries:
                    pg_search.search(catalog, query, 10, where=where, exact=False, ef_search=ef)
            for _ in range(args.rounds):
                for ef in EF_SEARCHES:
                    for query, expected in zip(queries, truth, strict=True):
                        started = time.perf_counter()
                        hits = pg_search.search(
                            catalog, query, 10, where=where, exact=False, ef_search=ef
                        )
                        times[ef].append((time.perf_counter() - started) * 1000)
                        found = {int(item.id[1:]) for item, _ in hits}
                        recalls[ef].append(len(found & expected) / 10)
            share = len(allowed) / len(vectors)
            for ef in EF_SEARCHES:
                row = {
                    "filter": name,
                    "share": round(share, 4),
                    "ef_search": ef,
                    "filtered_candidates": round(ef * share, 1),
                    "p50_ms": round(statistics.median(times[ef]), 2),
                    "recall_at_10": round(float(np.mean(recalls[ef])), 3),
                }
                rows_out.append(row)
                print(
                    f"{name:<24} ef_search {ef:>4} (~{row['filtered_candidates']:>5} passing): "
                    f"p50 {row['p50_ms']:>6} ms  recall@10 {row['recall_at_10']}",
                    flush=True,
                )
    result = {
        **environment("numpy", "psycopg", "pgvector"),
        "items": args.items,
        "dim": args.dim,
        "queries": args.queries,
        "rounds": args.rounds,
        "searches": rows_out,
    }
    save(args.out or f"benchmarks/results/pg_filtered_ef_{args.items}.json", result)


if __name__ == "__main__":
    main()
