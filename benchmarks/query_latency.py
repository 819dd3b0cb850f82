"""Query latency: `Engine.recommend` from an image file on a 10,000-item index, search alone on
10k, 100k and 1M-item indexes (synthetic unit vectors), index load time and resident memory.

Usage: python benchmarks/query_latency.py [--sizes 10000,100000,1000000] [--queries 50]
Writes benchmarks/results/query_latency.json and prints a table. The 1M index needs ~5 GB of
disk in the temp folder.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import environment, save

from stylefinder.catalog.demo import write_demo_catalog
from stylefinder.embed.runner import Embedder
from stylefinder.index.search import top_k
from stylefinder.index.store import IndexStore
from stylefinder.recommend.engine import Engine
from stylefinder.types import Item


def rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_index(directory: Path, embedder: Embedder, size: int, seed: int = 0) -> Path:
    """An index of `size` random unit vectors in the embedder's space, with small metadata."""
    store = IndexStore.create(directory, embedder.space)
    rng = np.random.default_rng(seed)
    categories = ["Dress", "Coat", "Shirt", "Bag", "Sneaker"]
    with store.writer() as writer:
        for start in range(0, size, 100_000):
            count = min(100_000, size - start)
            block = rng.standard_normal((count, embedder.space.dim), dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            for n, vector in enumerate(block, start=start):
                item = Item(
                    f"item-{n:07d}",
                    f"images/{n}.jpg",
                    f"{n:064x}",
                    metadata={"category": categories[n % 5]},
                )
                writer.put(item, vector)
    return directory  # one commit at the end: a commit rewrites the whole matrix


def percentiles(samples: list[float]) -> dict:
    q = statistics.quantiles(samples, n=100)
    return {"p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--out", default="benchmarks/results/query_latency.json")
    args = parser.parse_args()
    embedder = Embedder("efficientnet-lite0")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photos = sorted((write_demo_catalog(Path(tmp) / "demo").root / "images").glob("*.png"))
        for size in [int(s) for s in args.sizes.split(",")]:
            index_dir = synthetic_index(Path(tmp) / f"ix-{size}", embedder, size)
            before = rss_mb()
            started = time.perf_counter()
            engine = Engine(IndexStore.open(index_dir), embedder=embedder)
            load_s = time.perf_counter() - started
            rss_after_open = rss_mb() - before
            vectors = engine.snapshot.vectors
            queries = np.asarray(vectors[: args.queries])
            for q in queries[:3]:
                top_k(vectors, q, 5)  # warm the page cache
            search = []
            for q in queries:
                t = time.perf_counter()
                top_k(vectors, q, 5)
                search.append(time.perf_counter() - t)
            row = {
                "items": size,
                "matrix_mb": round(vectors.nbytes / 1e6, 1),
                "open_s": round(load_s, 3),
                "rss_growth_on_open_mb": round(rss_after_open, 1),
                "search": percentiles(search),
            }
            if size == 10_000:
                engine.recommend(photos[0], k=5)
                recommend = []
                for photo in photos[: args.queries]:
                    t = time.perf_counter()
                    engine.recommend(photo, k=5)
                    recommend.append(time.perf_counter() - t)
                row["recommend_from_file"] = percentiles(recommend)
            rows.append(row)
            print(json.dumps(row), flush=True)
            del engine, vectors
    result = {
        **environment("numpy", "onnxruntime"),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rows": rows,
    }
    save(args.out, result)
    print(
        f"\n{'items':>9} {'matrix MB':>9} {'open s':>7} {'RSS +MB':>8} {'search p50':>10} "
        f"{'p99':>7} {'recommend p50':>13} {'p99':>7}"
    )
    for r in rows:
        rec = r.get("recommend_from_file", {})
        print(
            f"{r['items']:>9,} {r['matrix_mb']:>9} {r['open_s']:>7} "
            f"{r['rss_growth_on_open_mb']:>8} {r['search']['p50_ms']:>10} "
            f"{r['search']['p99_ms']:>7} {rec.get('p50_ms', '-'):>13} {rec.get('p99_ms', '-'):>7}"
        )


if __name__ == "__main__":
    main()
