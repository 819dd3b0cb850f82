"""Leave-one-out precision@5 on the demo catalog for backbones and poolings, beside raw pixels.

Usage: python benchmarks/demo_precision.py [--backbones efficientnet-lite0,efficientnet-lite2]
Writes benchmarks/results/demo_precision.json (with command, machine and versions) and prints
a table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import environment, save

from stylefinder.catalog.demo import write_demo_catalog
from stylefinder.catalog.images import load_image
from stylefinder.evaluate.metrics import all_correct_at_k, precision_at_k
from stylefinder.index.store import IndexStore
from stylefinder.jobs.build import build_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="efficientnet-lite0,efficientnet-lite2")
    parser.add_argument("--poolings", default="gem")
    parser.add_argument("--precisions", default="fp32", help="fp32,int8 compares both")
    parser.add_argument("--out", default="benchmarks/results/demo_precision.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        demo = write_demo_catalog(Path(tmp) / "catalog")
        combos = [
            (b, p, q)
            for b in args.backbones.split(",")
            for p in args.poolings.split(",")
            for q in args.precisions.split(",")
        ]
        for backbone, pooling, precision in combos:
            index_dir = Path(tmp) / f"{backbone}-{pooling}-{precision}"
            started = time.perf_counter()
            build_index(
                demo.root,
                index_dir,
                metadata_csv=demo.csv_path,
                backbone=backbone,
                pooling=pooling,
                precision=precision,
            )
            seconds = time.perf_counter() - started
            snap = IndexStore.open(index_dir).snapshot()
            labels = np.array([item.metadata["category"] for item in snap.items])
            vectors = np.asarray(snap.vectors)
            rows.append(_row(f"{backbone} ({pooling}, {precision})", vectors, labels, seconds))
        pixels = np.stack(
            [np.asarray(load_image(demo.root / i.path), np.float32).ravel() for i in snap.items]
        )
        pixels /= np.linalg.norm(pixels, axis=1, keepdims=True)
        rows.insert(0, _row("raw-pixel cosine", pixels, labels, 0.0))
    result = {
        **environment("torch", "onnxruntime"),
        "catalog": "demo: 1,000 Fashion-MNIST test images, 100 per class",
        "rows": rows,
    }
    save(args.out, result)
    print(f"{'embedding':<36} {'precision@5':>11} {'all 5 right':>11} {'index s':>8}")
    for row in rows:
        print(
            f"{row['embedding']:<36} {row['precision_at_5']:>11.4f} "
            f"{row['all_5_right']:>11.3f} {row['index_seconds']:>8.1f}"
        )


def _row(name: str, vectors: np.ndarray, labels: np.ndarray, seconds: float) -> dict:
    return {
        "embedding": name,
        "precision_at_5": round(precision_at_k(vectors, labels, 5), 4),
        "all_5_right": round(all_correct_at_k(vectors, labels, 5), 4),
        "index_seconds": round(seconds, 1),
    }


if __name__ == "__main__":
    main()
