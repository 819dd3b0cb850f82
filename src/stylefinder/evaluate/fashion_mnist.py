"""Fashion-MNIST as a labeled catalog: baselines, poolings and the tuned projection side by side.

The official split keeps the evaluation honest: the projection and its classifier learn from the
60,000 training images only, and the 10,000 test images are the catalog under evaluation (each
queries the other 9,999). Images are stored as the demo catalog stores them (dark garment on
white). Embeddings are cached under the model cache folder, so reruns take seconds.

Example:
    >>> result = evaluate_fashion_mnist("efficientnet-lite0")  # doctest: +SKIP
    >>> result["rows"][-1]["configuration"], round(result["rows"][-1]["precision@5"], 3)
    ('tuned (mlp)', 0.9...)
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np

from stylefinder.catalog.demo import CLASS_NAMES, load_fashion_mnist
from stylefinder.evaluate.metrics import leave_one_out_neighbours
from stylefinder.evaluate.retrieval import neighbour_metrics, retrieval_metrics

_KS = (1, 5, 10)


def embed_split(
    backbone: str, split: str, *, pooling: str | None = None, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors and labels of a Fashion-MNIST split, embedded once and then cached.

    Example:
        >>> vectors, labels = embed_split("efficientnet-lite0", "test", limit=100)  # doctest: +SKIP
        >>> vectors.shape, labels[:3]
        ((100, 1280), array([9, 2, 1], dtype=uint8))
    """
    from PIL import Image
    from tqdm.auto import tqdm

    from stylefinder.embed.cache import cache_dir
    from stylefinder.embed.load import load_embedder

    embedder = load_embedder(backbone, pooling=pooling)
    space = embedder.space
    key = [space.backbone, space.pooling, space.weights_fingerprint[:12], space.precision]
    name = "-".join([*key, split, str(limit or "all")]) + ".npz"
    cache = cache_dir() / "fashion-mnist" / name
    if cache.is_file():
        with np.load(cache) as data:
            return data["vectors"], data["labels"]
    images, labels = load_fashion_mnist(split)
    images, labels = images[:limit], labels[:limit]
    vectors = np.empty((len(images), space.dim), np.float32)
    garments = ((n, Image.fromarray(255 - image).convert("RGB")) for n, image in enumerate(images))
    with tqdm(total=len(images), desc=f"{split} {space.pooling}", unit="img") as bar:
        for batch in embedder.embed_stream(garments):
            if batch.failures:
                raise batch.failures[0][1]
            vectors[batch.keys] = batch.vectors
            bar.update(len(batch.keys))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vectors=vectors, labels=labels)
    return vectors, labels


def pixel_vectors(split: str, *, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels (as stored: dark on white) as unit vectors: the no-model baseline."""
    images, labels = load_fashion_mnist(split)
    pixels = (255 - images[:limit]).reshape(len(images[:limit]), -1).astype(np.float32)
    return pixels / np.linalg.norm(pixels, axis=1, keepdims=True), labels[:limit]


def evaluate_fashion_mnist(
    backbone: str = "efficientnet-lite0",
    *,
    poolings: tuple[str, ...] = ("gem", "max", "avg"),
    held_out: str = "Shirt",
    epochs: int = 12,
    limit: int | None = None,
    report_dir: str | Path | None = None,
    command: str = "",
) -> dict:
    """Leave-one-out retrieval on the test split for raw pixels, each pooling, the original
    design (max pooling, Euclidean distance) and the projection tuned on the train split; the
    tuned classifier's accuracy and confusion; and a held-out-class check.

    `limit` keeps the first images of each split (for quick runs).
    """
    from stylefinder.recommend.projection import fit_mlp_projection

    started = time.perf_counter()
    names = np.array(CLASS_NAMES)
    rows = []

    def add(configuration: str, vectors: np.ndarray, labels: np.ndarray, **extra) -> None:
        metrics = retrieval_metrics(vectors, names[labels], _KS).metrics
        rows.append({"configuration": configuration, **extra, **metrics})
        print(f"  {configuration:<34} precision@5 {metrics['precision@5']:.4f}", flush=True)

    pixels, test_labels = pixel_vectors("test", limit=limit)
    add("raw pixels, cosine", pixels, test_labels)
    test = {}
    for pooling in poolings:
        test[pooling], _ = embed_split(backbone, "test", pooling=pooling, limit=limit)
        add(f"{backbone} {pooling}, cosine", test[pooling], test_labels, pooling=pooling)
    if "max" in test:
        rows.append(
            {
                "configuration": f"original design: {backbone} max, Euclidean",
                "pooling": "max",
                **_euclidean_metrics(test["max"], names[test_labels]),
            }
        )
    default = poolings[0]
    train, train_labels = embed_split(backbone, "train", pooling=default, limit=limit)
    projection = fit_mlp_projection(train, names[train_labels], epochs=epochs, progress=True)
    tuned = projection.apply(test[default])
    add("tuned (mlp)", tuned, test_labels, pooling=default, trained_on=len(train))

    probabilities = projection.probabilities(test[default])
    classes = projection.classifier.labels
    truth = np.searchsorted(classes, names[test_labels])
    top3 = np.argsort(-probabilities, axis=1)[:, :3]
    confusion = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(confusion, (truth, top3[:, 0]), 1)
    classifier = {
        "top1_accuracy": float((top3[:, 0] == truth).mean()),
        "top3_accuracy": float((top3 == truth[:, None]).any(axis=1).mean()),
        "expected_calibration_error": _calibration_error(probabilities, truth),
        "temperature": projection.classifier.temperature,
        "classes": classes,
        "confusion": confusion.tolist(),
    }
    print(f"  classifier top-1 accuracy {classifier['top1_accuracy']:.4f}", flush=True)

    held = CLASS_NAMES.index(held_out)
    keep = train_labels != held
    without = fit_mlp_projection(
        train[keep], names[train_labels[keep]], epochs=epochs, progress=True
    )
    members = test_labels == held
    held_out_check = {
        "class": held_out,
        "raw": _class_precision(test[default], test_labels, members),
        "tuned_with_it": _class_precision(tuned, test_labels, members),
        "tuned_without_it": _class_precision(without.apply(test[default]), test_labels, members),
    }
    print(f"  held-out class {held_out}: {held_out_check}", flush=True)
    result = {
        "backbone": backbone,
        "train_items": len(train),
        "test_items": len(test_labels),
        "rows": rows,
        "classifier": classifier,
        "held_out": held_out_check,
        "projection": projection.info,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if report_dir:
        write_fashion_mnist_report(result, report_dir, command=command)
    return result


def write_fashion_mnist_report(result: dict, directory: str | Path, *, command: str = "") -> Path:
    """report.json, report.md and classifier_confusion.png in `directory`."""
    from stylefinder.evaluate.report import _pyplot, environment_info
    from stylefinder.io.files import atomic_write

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, **environment_info(), **result}
    atomic_write(directory / "report.json", json.dumps(payload, indent=2).encode())
    lines = [
        f"# Fashion-MNIST retrieval ({result['test_items']:,} test items, leave-one-out)",
        "",
        f"Command: `{command}`" if command else "",
        "",
        "| configuration | precision@1 | precision@5 | precision@10 | mAP@10 | recall@5 |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['configuration']} | {row['precision@1']:.4f} | {row['precision@5']:.4f} | "
            f"{row['precision@10']:.4f} | {row['mAP@10']:.4f} | {row['recall@5']:.4f} |"
        )
    c, h = result["classifier"], result["held_out"]
    lines += [
        "",
        f"Classifier (trained on {result['train_items']:,} train items): top-1 accuracy "
        f"{c['top1_accuracy']:.4f}, top-3 {c['top3_accuracy']:.4f}, expected calibration error "
        f"{c['expected_calibration_error']:.4f}.",
        "",
        f"Held-out class {h['class']} (precision@5 of its test items): raw {h['raw']:.4f}, "
        f"tuned without it {h['tuned_without_it']:.4f}, tuned with it {h['tuned_with_it']:.4f}.",
    ]
    atomic_write(directory / "report.md", "\n".join(lines).encode())
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    confusion = np.asarray(c["confusion"])
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(c["classes"])), c["classes"], rotation=60, ha="right")
    ax.set_yticks(range(len(c["classes"])), c["classes"])
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"classifier confusion, accuracy {c['top1_accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(directory / "classifier_confusion.png", dpi=110)
    plt.close(fig)
    return directory / "report.md"


def _euclidean_metrics(vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The original design's ranking: smallest Euclidean distance between L2-normalized vectors
    (the same order as cosine, computed here the way it did, to show it)."""
    squared = (vectors**2).sum(axis=1)
    depth = max(_KS)
    neighbours = np.empty((len(vectors), depth), np.int64)
    for start in range(0, len(vectors), 1024):
        block = vectors[start : start + 1024]
        distances = squared[start : start + 1024, None] + squared[None] - 2 * block @ vectors.T
        distances[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        part = np.argpartition(distances, depth, axis=1)[:, :depth]
        order = np.argsort(np.take_along_axis(distances, part, axis=1), axis=1, kind="stable")
        neighbours[start : start + len(block)] = np.take_along_axis(part, order, axis=1)
    return neighbour_metrics(neighbours, labels, _KS)


def _class_precision(vectors: np.ndarray, labels: np.ndarray, members: np.ndarray) -> float:
    """precision@5 of the queries in `members`, searching the whole catalog."""
    neighbours = leave_one_out_neighbours(vectors, 5)
    return float((labels[neighbours[members]] == labels[members, None]).mean())


def _calibration_error(probabilities: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the top-1 confidence (0 = perfectly calibrated)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    edges = np.linspace(0, 1, bins + 1)
    error = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(error)
