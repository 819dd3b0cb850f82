"""Write latency on a large index: `Engine.add_item` (one photo), a metadata change and
`Engine.remove_item`, each a commit of its own, on an index of 100,000 items (synthetic
1280-d vectors; the first stage of two-stage search is built, as for any index of 20k+ items).

Usage: python benchmarks/write_latency.py [--items 100000] [--repeats 5]
Writes benchmarks/results/write_latency.json and prints a table. To compare with another
version of stylefinder, run this script with that version's `src` first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import environment, save
from PIL import Image

from stylefinder.embed.load import load_embedder
from stylefinder.engine import Engine
from stylefinder.index.store import IndexStore
from stylefinder.types import Item


def photo(n: int) -> bytes:
    image = Image.new("RGB", (96, 128), "white")
    image.paste((40 + n * 7 % 200, 30, 90), (20, 20, 76, 108))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def timed(action, repeats: int) -> dict:
    times = []
    for n in range(repeats):
        started = time.perf_counter()
        action(n)
        times.append(time.perf_counter() - started)
    return {"p50_s": round(statistics.median(times), 2), "max_s": round(max(times), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/write_latency.json")
    args = parser.parse_args()
    embedder = load_embedder("efficientnet-lite0")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = IndexStore.create(Path(tmp) / "ix", embedder.space)
        vectors = rng.normal(size=(args.items, embedder.space.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        started = time.perf_counter()
        with store.writer() as writer:
            for n, vector in enumerate(vectors):
                metadata = {"category": f"c{n % 10}"}
                writer.put(Item(f"i{n}", f"{n}.png", f"h{n}", metadata=metadata), vector)
        build_s = time.perf_counter() - started
        engine = Engine(store, embedder=embedder)
        engine.add_item("warm-up", photo(0))  # loads the model

        def change_metadata(n: int) -> None:  # as a script would, through the store
            with store.writer() as writer:
                writer.put(Item(f"i{n}", f"{n}.png", f"h{n}", metadata={"category": "new"}), None)
            engine.reload()

        rows = {
            "add_item": timed(lambda n: engine.add_item(f"new{n}", photo(n + 1)), args.repeats),
            "metadata change": timed(change_metadata, args.repeats),
            "remove_item": timed(lambda n: engine.remove_item(f"new{n}"), args.repeats),
        }
    result = {
        **environment("numpy"),
        "items": args.items,
        "build_commit_s": round(build_s, 1),
        "rows": rows,
    }
    save(args.out, result)
    print(f"one commit each on {args.items:,} items (built in {build_s:.1f} s): p50 / max, s")
    for name, row in rows.items():
        print(f"{name:<16} {row['p50_s']:>6} / {row['max_s']}")


if __name__ == "__main__":
    main()
