"""Filtered search latency: `Engine.search_vector` with metadata filters on a 100,000-item index,
side by side with the earlier way of filtering: a pass over every item's metadata per query,
then the same search the engine runs (the index's vector index, `snapshot.index.search` with
the passing rows as `allowed`, without building results, so the earlier way is timed a little
short).

The index has random 64-d unit vectors and three metadata columns: category (9 values),
colours (2 of 6 names, comma-separated) and price (200 values). It is committed as the engine's
indexes are: from `AnnSettings.min_rows` (20,000) items with a faiss HNSW graph, whose search
takes the filter as a bitmap of allowed nodes, or scores the passing rows exactly where few
pass (the kind and search width are recorded). Each filter is timed on its first query (the
column is read from the items then) and over the following queries (median).

Usage: python benchmarks/filter_latency.py [--items 100000] [--queries 50]
Writes benchmarks/results/filter_latency.json and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import environment, save

from stylefinder.engine import Engine
from stylefinder.index.store import IndexStore
from stylefinder.recommend.filters import MULTI_VALUE_COLUMNS
from stylefinder.types import EmbeddingSpace, Item

CATEGORIES = ["Dress", "Coat", "Shirt", "Bag", "Sneaker", "Trouser", "Pullover", "Sandal", "Boot"]
COLOURS = ["navy", "white", "black", "red", "grey", "beige"]
FILTERS = {
    "none": None,
    "category=Dress": {"category": ["Dress"]},
    "colours=navy": {"colours": ["navy"]},
    "category=Dress,Coat + colours=navy": {"category": ["Dress", "Coat"], "colours": ["navy"]},
}


def item_pass(items, filters) -> np.ndarray:
    """The earlier filter: every item's metadata looked at, per query."""
    mask = np.ones(len(items), bool)
    for column, wanted in (filters or {}).items():
        allowed = set(wanted)
        values = [item.metadata.get(column) for item in items]
        if column in MULTI_VALUE_COLUMNS:
            passes = (bool(v and allowed.intersection(v.split(","))) for v in values)
        else:
            passes = (v in allowed for v in values)
        mask &= np.fromiter(passes, bool, count=len(items))
    return mask


def build(directory: Path, items: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.normal(size=(items, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = IndexStore.create(directory, EmbeddingSpace("synthetic", "gem", "none", 64))
    with store.writer() as writer:
        for i, vector in enumerate(vectors):
            metadata = {
                "category": CATEGORIES[i % len(CATEGORIES)],
                "colours": ",".join(rng.choice(COLOURS, 2, replace=False)),
                "price": str(i % 200),
            }
            writer.put(Item(f"i{i}", f"{i}.png", f"h{i}", metadata=metadata), vector)
    return vectors


def timed(run, queries: np.ndarray) -> dict:
    times = []
    for query in queries:
        started = time.perf_counter()
        run(query)
        times.append((time.perf_counter() - started) * 1000)
    return {"first_ms": round(times[0], 1), "then_p50_ms": round(statistics.median(times[1:]), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--out", default="benchmarks/results/filter_latency.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        vectors = build(Path(tmp) / "ix", args.items, rng)
        queries = vectors[rng.choice(len(vectors), args.queries, replace=False)]
        engine = Engine.open(Path(tmp) / "ix")
        snapshot = IndexStore.open(Path(tmp) / "ix").snapshot()  # the earlier way: its own items
        items, index = snapshot.items, snapshot.index
        for name, filters in FILTERS.items():
            earlier_way = timed(
                lambda q, f=filters: index.search(
                    q, 10, allowed=item_pass(items, f) if f else None
                ),
                queries,
            )
            codes = timed(lambda q, f=filters: engine.search_vector(q, 10, filters=f), queries)
            passing = int(engine.browse(filters=filters, limit=0)[1])  # after: not a warm-up
            rows.append(
                {
                    "filter": name,
                    "passing_items": passing,
                    "item_pass": earlier_way,
                    "column_codes": codes,
                }
            )
        vector_index = {
            key: index.params.get(key) for key in ("kind", "search_width", "recall_at_10")
        }
    result = {**environment("numpy", "faiss-cpu"), "items": args.items}
    save(args.out, {**result, "vector_index": vector_index, "rows": rows})
    print(
        f"search_vector, k=10, {args.items:,} items, {vector_index['kind']} index "
        f"(search width {vector_index['search_width']}): first query / then p50, ms"
    )
    print(f"{'filter':<36} {'passing':>8} {'item pass':>16} {'column codes':>16}")
    for r in rows:
        a, b = r["item_pass"], r["column_codes"]
        print(
            f"{r['filter']:<36} {r['passing_items']:>8,} "
            f"{a['first_ms']:>7} / {a['then_p50_ms']:<6} {b['first_ms']:>7} / {b['then_p50_ms']:<6}"
        )


if __name__ == "__main__":
    main()
