"""Fashion-MNIST tuning trade-offs, with single networks: the raw-similarity blend weight
against precision@5 and the held-out class, and independently trained networks as an ensemble.

Usage: python benchmarks/tune_sweep.py [--blends 0,0.35,0.5] [--members 3] [--held-out Shirt]
Uses the embeddings cached by `stylefinder eval fashion-mnist` (or embeds them first). Trains
on the 60,000 training images, evaluates on the 10,000 test images (leave-one-out). Writes
benchmarks/results/tune_sweep.json and prints a table.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import environment, save

from stylefinder.catalog.demo import CLASS_NAMES
from stylefinder.evaluate.fashion_mnist import _class_precision, embed_split
from stylefinder.evaluate.metrics import precision_at_k
from stylefinder.recommend.projection import _normalize, fit_mlp_projection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--blends", default="0,0.35,0.5")
    parser.add_argument("--members", type=int, default=3, help="networks in the ensemble")
    parser.add_argument("--held-out", default="Shirt")
    parser.add_argument("--out", default="benchmarks/results/tune_sweep.json")
    args = parser.parse_args()
    names = np.array(CLASS_NAMES)
    train, train_labels = embed_split(args.backbone, "train")
    test, test_labels = embed_split(args.backbone, "test")
    held = CLASS_NAMES.index(args.held_out)
    members = test_labels == held
    keep = train_labels != held
    full = fit_mlp_projection(train, names[train_labels], members=1)
    without = fit_mlp_projection(train[keep], names[train_labels[keep]], members=1)
    rows = []
    for blend in [float(b) for b in args.blends.split(",")]:
        full.raw_weight = without.raw_weight = blend
        row = {
            "raw_weight": blend,
            "precision@5": precision_at_k(full.apply(test), test_labels, 5),
            "held_out_raw": _class_precision(test, test_labels, members),
            "held_out_tuned_without_it": _class_precision(
                without.apply(test), test_labels, members
            ),
        }
        rows.append(row)
        print(row, flush=True)

    projections = [full] + [
        fit_mlp_projection(train, names[train_labels], seed=seed, members=1)
        for seed in range(1, args.members)
    ]
    labels = np.array(full.classifier.labels)
    probabilities = [p.probabilities(test) for p in projections]
    single = [float((labels[p.argmax(1)] == names[test_labels]).mean()) for p in probabilities]
    mean = np.mean(probabilities, axis=0)
    ensemble_accuracy = float((labels[mean.argmax(1)] == names[test_labels]).mean())
    outputs = [p._outputs(test) for p in projections]
    raw = _normalize((test - full.mean) @ full.matrix)
    joined = np.hstack([np.sqrt(0.5) * raw, np.sqrt(0.5) * _normalize(np.hstack(outputs))])
    ensemble = {
        "members": args.members,
        "single_accuracies": single,
        "ensemble_accuracy": ensemble_accuracy,
        "ensemble_precision@5": precision_at_k(joined, test_labels, 5),
    }
    print(ensemble, flush=True)
    save(args.out, {**environment("numpy", "torch"), "rows": rows, "ensemble": ensemble})
    print(f"\n{'raw weight':>10} {'P@5':>7} {args.held_out + ' raw':>12} {'tuned w/o it':>13}")
    for r in rows:
        print(
            f"{r['raw_weight']:>10} {r['precision@5']:>7.4f} {r['held_out_raw']:>12.4f} "
            f"{r['held_out_tuned_without_it']:>13.4f}"
        )
    print(
        f"ensemble of {args.members}: accuracy {ensemble_accuracy:.4f} (single "
        f"{', '.join(f'{a:.4f}' for a in single)}), precision@5 "
        f"{ensemble['ensemble_precision@5']:.4f}"
    )


if __name__ == "__main__":
    main()
