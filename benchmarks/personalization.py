"""Personalization with simulated shoppers: stylefinder against random, most popular and
nearest-to-last-like, on the 1,000-item demo catalog and on the 10,000-item Fashion-MNIST test
set (raw embeddings, and with a projection tuned on the 60,000 training images).

Usage: python benchmarks/personalization.py [--demo-index DIR] [--cache /tmp/fmnist-lite0.npz]
    [--users 500] [--report-dir DIR]
Without --demo-index the demo catalog is written and embedded (about a minute). The Fashion-MNIST
rows need the embeddings cache written by benchmarks/fashion_mnist_tune.py --cache. Writes
benchmarks/results/personalization.json and prints a table; --report-dir also writes each
catalog's report.md and plot. Tip: OPENBLAS_NUM_THREADS=1 on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import environment, save

from stylefinder.catalog.demo import CLASS_NAMES, write_demo_catalog
from stylefinder.evaluate.personalization import evaluate_personalization
from stylefinder.index.store import IndexStore
from stylefinder.jobs.build import build_index
from stylefinder.recommend.projection import fit_projection
from stylefinder.types import EmbeddingSpace, Item

SPACE = EmbeddingSpace("efficientnet-lite0", "gem", "fmnist-cache", 1280)


def demo_index(directory: Path) -> Path:
    """The demo catalog, embedded into an index in `directory`."""
    catalog = write_demo_catalog(directory / "catalog")
    build_index(catalog.root, directory / "index", metadata_csv=catalog.csv_path)
    return directory / "index"


def fashion_mnist_index(directory: Path, vectors: np.ndarray, labels: np.ndarray) -> Path:
    """An index of cached Fashion-MNIST embeddings with their class names as `category`."""
    store = IndexStore.create(directory, SPACE)
    with store.writer() as writer:
        for n, (vector, label) in enumerate(zip(vectors, labels, strict=True)):
            item = Item(
                f"fmnist-{n:05d}",
                f"images/{n:05d}.png",
                f"{n:064x}",
                metadata={"category": CLASS_NAMES[int(label)]},
            )
            writer.put(item, vector)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-index", help="an index of the demo catalog (built if omitted)")
    parser.add_argument("--cache", default="/tmp/fmnist-lite0.npz")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-dir", help="write each catalog's report into a subfolder")
    parser.add_argument("--out", default="benchmarks/results/personalization.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # catalog name -> (report folder name, index directory)
        indexes = {"demo (1k)": ("demo-1k", Path(args.demo_index) if args.demo_index else None)}
        cache = Path(args.cache)
        if cache.is_file():
            with np.load(cache) as data:
                test_x, test_y = data["sx"], data["sy"]
                train = (data["tx"], data["ty"]) if "tx" in data else None
            raw = fashion_mnist_index(Path(tmp) / "fmnist", test_x, test_y)
            indexes["fashion-mnist test (10k)"] = ("fashion-mnist-10k", raw)
            if train is not None:
                tuned = fashion_mnist_index(Path(tmp) / "fmnist-tuned", test_x, test_y)
                fit_projection(train[0], train[1], dim=32, shrinkage=0.01).save(tuned)
                indexes["fashion-mnist test (10k), tuned"] = ("fashion-mnist-10k-tuned", tuned)
        else:
            print(f"no embeddings cache at {cache}: Fashion-MNIST rows skipped")
        if indexes["demo (1k)"][1] is None:
            indexes["demo (1k)"] = ("demo-1k", demo_index(Path(tmp) / "demo"))
        for name, (slug, index_dir) in indexes.items():
            report_dir = Path(args.report_dir) / slug if args.report_dir else None
            result = evaluate_personalization(
                index_dir,
                "category",
                users=args.users,
                seed=args.seed,
                report_dir=report_dir,
                command=environment()["command"],
            )
            result["catalog"] = name
            rows.append(result)
            print(
                f"\n{name}: {result['index']['items']:,} items, {args.users} shoppers, "
                f"{result['seconds']:.0f} s"
            )
            print(table(result))
    save(args.out, {**environment("numpy"), "results": rows})


def table(result: dict) -> str:
    names = ["hit_rate@10", "precision@10", "ndcg@10", "intra_list_diversity", "coverage"]
    lines = [f"{'method':<24}" + "".join(f"{n:>22}" for n in names)]
    for method, metrics in result["methods"].items():
        lines.append(f"{method:<24}" + "".join(f"{metrics[n]:>22.3f}" for n in names))
    ratio = result["precision_vs_most_popular"]
    lines.append(f"precision@10 stylefinder / most popular: {ratio:.2f}x")
    for row in result["sweep"]:
        lines.append(
            f"  MMR {row['diversity_weight']:.1f}: precision@10 {row['precision@10']:.3f}  "
            f"hit rate@10 {row['hit_rate@10']:.3f}  diversity {row['intra_list_diversity']:.3f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
