"""Adding one item to a 1M-item index: a writer's put + commit, as `Engine.add_item` does.

The store's cost does not depend on the vectors' width, so this uses 64-d random unit vectors
(the graph builds in about two minutes instead of seven) with the HNSW graph the index builds
at this size. The first add after opening is reported apart: it builds the id -> row mapping.

Usage: python benchmarks/add_latency_1m.py [--items 1000000] [--repeats 20]
Writes benchmarks/results/add_latency_1m.json and prints the figures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import environment, save

from stylefinder.index.store import IndexStore
from stylefinder.index.vector_index import AnnSettings
from stylefinder.types import EmbeddingSpace, Item

DIM = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/add_latency_1m.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.items + args.repeats + 1, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = IndexStore.create(Path(tmp) / "ix", EmbeddingSpace("bench", "gem", "w", DIM))
        started = time.perf_counter()
        with store.writer(ann=AnnSettings(kind="hnsw", degree=16, queries=50)) as writer:
            for i in range(args.items):
                writer.put(Item(f"sku-{i}", f"{i}.png", f"h{i}"), vectors[i])
        build = time.perf_counter() - started
        snapshot = store.snapshot()
        seconds = []
        for n in range(args.repeats + 1):
            started = time.perf_counter()
            with store.writer(previous=snapshot) as writer:
                vector = vectors[args.items + n]
                writer.put(Item(f"new-{n}", "new.png", f"new-{n}"), vector)
            snapshot = writer.base
            seconds.append(time.perf_counter() - started)
        params = snapshot.index.params
    result = {
        **environment("faiss-cpu", "numpy"),
        "items": args.items,
        "dim": DIM,
        "build_s": round(build, 1),
        "first_add_ms": round(seconds[0] * 1e3, 1),
        "add_p50_ms": round(statistics.median(seconds[1:]) * 1e3, 1),
        "add_max_ms": round(max(seconds[1:]) * 1e3, 1),
        "repeats": args.repeats,
        "index": {key: params.get(key) for key in ("kind", "nodes", "uncovered")},
    }
    save(args.out, result)
    print(result)


if __name__ == "__main__":
    main()
