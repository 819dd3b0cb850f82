"""Choosing the tuning defaults without looking at the test set: a validation split of
Fashion-MNIST's training set (50,000 to train, 10,000 to evaluate leave-one-out), precision@5
of the tuned space, and the held-out-class check (trained without one class, that class's
precision@5) for several blends of the raw components, the hidden activations (after or before
the ReLU) and the networks' outputs.

Usage: python benchmarks/tune_validation.py [--components 512] [--members 3] [--hidden 512]
    [--dim 128] [--epochs 12] [--blends 0.5:0,0.25:0.4,0.3:0.4] [--held-out Shirt]
Uses the embeddings cached by `stylefinder eval fashion-mnist`. Trains 2 x `members` networks
(about 4 minutes on 2 cores), writes benchmarks/results/tune_validation.json, prints a table.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import environment, save

from stylefinder.catalog.demo import CLASS_NAMES
from stylefinder.evaluate.fashion_mnist import _class_precision, embed_split
from stylefinder.evaluate.metrics import precision_at_k
from stylefinder.recommend.projection import Projection, _normalize, fit_mlp_projection


def blend(projection: Projection, x: np.ndarray, raw: float, hidden: float, before_relu: bool):
    """The tuned vectors of `x` for blend weights `raw` and `hidden`, with the hidden
    activations taken before or after the ReLU (centred on their mean over `x`)."""
    components = _normalize((x - projection.mean) @ projection.matrix)
    activations, outputs = [], []
    for network in [projection, *projection.extra]:
        (w1, b1), (w2, b2) = network.layers
        inner = ((x - network.mean) @ network.matrix) @ w1 + b1
        after = np.maximum(inner, 0)
        chosen = inner if before_relu else after
        activations.append(_normalize(chosen - chosen.mean(axis=0)))
        outputs.append(_normalize(after @ w2 + b2))
    return np.hstack(
        [
            np.sqrt(raw) * components,
            np.sqrt(hidden) * _normalize(np.hstack(activations)),
            np.sqrt(1 - raw - hidden) * _normalize(np.hstack(outputs)),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=512)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--blends", default="0.5:0,0.3:0.4,0.25:0.4")
    parser.add_argument("--held-out", default="Shirt")
    parser.add_argument("--out", default="benchmarks/results/tune_validation.json")
    args = parser.parse_args()
    names = np.array(CLASS_NAMES)
    vectors, labels = embed_split("efficientnet-lite0", "train")
    order = np.random.default_rng(1234).permutation(len(vectors))
    train, valid = order[:50_000], order[50_000:]
    x, y, vx, vy = vectors[train], labels[train], vectors[valid], labels[valid]
    held = CLASS_NAMES.index(args.held_out)
    members, keep = vy == held, y != held
    settings = {k: getattr(args, k) for k in ("components", "members", "hidden", "dim", "epochs")}
    full = fit_mlp_projection(x, names[y], **settings)
    without = fit_mlp_projection(x[keep], names[y[keep]], **settings)
    raw = {"precision@5": precision_at_k(vx, vy, 5), "held_out": _class_precision(vx, vy, members)}
    print(f"raw: precision@5 {raw['precision@5']:.4f}, {args.held_out} {raw['held_out']:.4f}")
    rows = []
    for pair in args.blends.split(","):
        raw_weight, hidden_weight = (float(w) for w in pair.split(":"))
        for before_relu in (False, True) if hidden_weight > 0 else (False,):
            tuned = blend(full, vx, raw_weight, hidden_weight, before_relu)
            unseen = blend(without, vx, raw_weight, hidden_weight, before_relu)
            rows.append(
                {
                    "raw_weight": raw_weight,
                    "hidden_weight": hidden_weight,
                    "hidden_before_relu": before_relu,
                    "precision@5": precision_at_k(tuned, vy, 5),
                    "held_out_without_it": _class_precision(unseen, vy, members),
                }
            )
            print(rows[-1], flush=True)
    save(args.out, {**environment("numpy", "torch"), **settings, "raw": raw, "rows": rows})
    print(f"\n{'raw':>5} {'hidden':>6} {'ReLU':>6} {'P@5':>7} {args.held_out + ' w/o':>10}")
    for r in rows:
        relu = "before" if r["hidden_before_relu"] else "after"
        print(
            f"{r['raw_weight']:>5} {r['hidden_weight']:>6} {relu:>6} {r['precision@5']:>7.4f} "
            f"{r['held_out_without_it']:>10.4f}"
        )
    print(f"target: precision@5 >= 0.90 and {args.held_out} >= {raw['held_out'] - 0.02:.4f}")


if __name__ == "__main__":
    main()
