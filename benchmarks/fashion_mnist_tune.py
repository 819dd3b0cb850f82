"""Fashion-MNIST: precision@5 of the test set (10k, leave-one-out) with raw embeddings and with
projections learned on the training set (60k), plus a held-out-class check.

Usage: python benchmarks/fashion_mnist_tune.py [--cache /tmp/fmnist-lite0.npz]
Needs the Debian package dataset-fashion-mnist (or internet). Embedding 70,000 images takes
~12 minutes on 2 cores; `--cache` keeps the embeddings for reruns. Writes
benchmarks/results/fashion_mnist_tune.json and prints a table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import environment, save
from PIL import Image

from stylefinder.catalog.demo import CLASS_NAMES, load_fashion_mnist
from stylefinder.embed.base import Embedder
from stylefinder.embed.load import load_embedder
from stylefinder.embed.preprocess import to_input
from stylefinder.evaluate.metrics import precision_at_k
from stylefinder.recommend.projection import fit_projection


def embed_split(embedder: Embedder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Embed every image of a split as the demo catalog stores it (dark garment on white)."""
    images, labels = load_fashion_mnist(split)
    prep = embedder.spec.preprocessing
    vectors = np.empty((len(images), embedder.space.dim), np.float32)
    started = time.perf_counter()
    for start in range(0, len(images), 1024):
        batch = np.stack(
            [
                to_input(Image.fromarray(255 - i).convert("RGB"), prep)
                for i in images[start : start + 1024]
            ]
        )
        vectors[start : start + len(batch)] = embedder.run(batch)[0]
        done = start + len(batch)
        rate = done / (time.perf_counter() - started)
        print(f"\r{split}: {done:,}/{len(images):,} ({rate:.0f} img/s)", end="", flush=True)
    print()
    return vectors, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--cache", help="npz file to keep the embeddings in")
    parser.add_argument("--dims", default="9,16,32,64,128")
    parser.add_argument("--shrinkages", default="0.01,0.05,0.1")
    parser.add_argument("--held-out", default="Shirt", help="class left out of training")
    parser.add_argument("--out", default="benchmarks/results/fashion_mnist_tune.json")
    args = parser.parse_args()
    cache = Path(args.cache) if args.cache else None
    if cache and cache.is_file():
        with np.load(cache) as data:
            train_x, train_y, test_x, test_y = (data[k] for k in ("tx", "ty", "sx", "sy"))
    else:
        embedder = load_embedder(args.backbone)
        train_x, train_y = embed_split(embedder, "train")
        test_x, test_y = embed_split(embedder, "test")
        if cache:
            np.savez(cache, tx=train_x, ty=train_y, sx=test_x, sy=test_y)
    rows = [{"embedding": "raw", "precision_at_5": precision_at_k(test_x, test_y, 5)}]
    print(f"raw {args.backbone}: precision@5 {rows[0]['precision_at_5']:.4f}")
    for dim in [int(d) for d in args.dims.split(",")]:
        for shrinkage in [float(s) for s in args.shrinkages.split(",")]:
            projection = fit_projection(train_x, train_y, dim=dim, shrinkage=shrinkage)
            p5 = precision_at_k(projection.apply(test_x), test_y, 5)
            rows.append(
                {"embedding": "tuned", "dim": dim, "shrinkage": shrinkage, "precision_at_5": p5}
            )
            print(f"tuned dim {dim:>3} shrinkage {shrinkage:<5} precision@5 {p5:.4f}", flush=True)
    best = max(rows[1:], key=lambda r: r["precision_at_5"])
    held = CLASS_NAMES.index(args.held_out)
    keep = train_y != held
    projection = fit_projection(
        train_x[keep], train_y[keep], dim=best["dim"], shrinkage=best["shrinkage"]
    )
    in_class = test_y == held
    raw_neighbours = _class_precision(test_x, test_y, in_class)
    tuned_neighbours = _class_precision(projection.apply(test_x), test_y, in_class)
    held_out = {"class": args.held_out, "raw": raw_neighbours, "tuned_without_it": tuned_neighbours}
    print(
        f"held-out class {args.held_out}: precision@5 raw {raw_neighbours:.4f}, "
        f"tuned without it {tuned_neighbours:.4f}"
    )
    save(
        args.out,
        {
            **environment("numpy", "onnxruntime"),
            "backbone": args.backbone,
            "rows": rows,
            "best": best,
            "held_out": held_out,
        },
    )


def _class_precision(vectors: np.ndarray, labels: np.ndarray, members: np.ndarray) -> float:
    """precision@5 of the queries in `members`, searching the whole test set."""
    from stylefinder.evaluate.metrics import leave_one_out_neighbours

    neighbours = leave_one_out_neighbours(vectors, 5)
    return float((labels[neighbours[members]] == labels[members, None]).mean())


if __name__ == "__main__":
    main()
