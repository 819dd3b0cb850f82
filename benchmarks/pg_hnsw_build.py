"""pgvector HNSW build settings: build time and recall@10 / p50 at several `hnsw.ef_search`.

Loads the catalog of `postgres_backend.py` (the same seeded, clustered vectors and queries),
then drops and rebuilds its HNSW index with each (m, ef_construction) in turn, building the
default twice because a parallel build's graph differs from run to run. Each ef_search is
timed after one untimed pass over the queries. Recall is against exact numpy search.

Usage: python benchmarks/pg_hnsw_build.py [--items 100000] [--queries 100]
Writes benchmarks/results/pg_hnsw_build_<items>.json and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import environment, save
from postgres_backend import bench_catalog
from psycopg import sql

from stylefinder.index.pg_search import search
from stylefinder.index.pg_tables import EMBEDDING_INDEX, create_hnsw_index

BUILDS = [(16, 64), (16, 64), (16, 128), (24, 100)]
EF_SEARCHES = (100, 200, 300)


def measure(catalog, queries, truth) -> list[dict]:
    rows = []
    for ef in EF_SEARCHES:
        for query in queries:  # warm the buffer cache
            search(catalog, query, 10, ef_search=ef, exact=False)
        times, recalls = [], []
        for query, expected in zip(queries, truth, strict=True):
            started = time.perf_counter()
            hits = search(catalog, query, 10, ef_search=ef, exact=False)
            times.append((time.perf_counter() - started) * 1000)
            recalls.append(len({int(item.id[1:]) for item, _ in hits} & expected) / 10)
        p50 = round(statistics.median(times), 2)
        rows.append({"ef_search": ef, "p50_ms": p50, "recall_at_10": round(np.mean(recalls), 3)})
    return rows


def rebuild(catalog, m: int, ef_construction: int) -> float:
    with catalog.connection() as conn, conn.transaction():
        conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
        schema, name = sql.Identifier(catalog.target.schema), sql.Identifier(EMBEDDING_INDEX)
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}.{}").format(schema, name))
        started = time.perf_counter()
        create_hnsw_index(
            conn, catalog.target.schema, catalog.header.dim, m=m, ef_construction=ef_construction
        )
        return round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with bench_catalog(args.items, args.dim, args.queries) as (catalog, vectors, queries):
        truth = [set(np.argsort(-(vectors @ q))[:10].tolist()) for q in queries]
        builds = []
        for m, ef_construction in BUILDS:
            build_s = rebuild(catalog, m, ef_construction)
            searches = measure(catalog, queries, truth)
            builds.append(
                {
                    "m": m,
                    "ef_construction": ef_construction,
                    "build_s": build_s,
                    "searches": searches,
                }
            )
            cells = "  ".join(
                f"ef {s['ef_search']}: {s['p50_ms']} ms {s['recall_at_10']}" for s in searches
            )
            print(
                f"m {m:>2}, ef_construction {ef_construction:>3}: build {build_s:>5} s  {cells}",
                flush=True,
            )
    result = {
        **environment("numpy", "psycopg", "pgvector"),
        "items": args.items,
        "dim": args.dim,
        "queries": args.queries,
        "builds": builds,
    }
    save(args.out or f"benchmarks/results/pg_hnsw_build_{args.items}.json", result)


if __name__ == "__main__":
    main()
