"""Leave-one-out retrieval evaluation of a labeled index: each item queries all the others.

Example:
    >>> result = evaluate_index("shop-index", label_column="category")  # doctest: +SKIP
    >>> round(result.metrics["precision@5"], 3)  # doctest: +SKIP
    0.784
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stylefinder.embed.load import text_encoder_for_space
from stylefinder.embed.registry import embeds_text
from stylefinder.evaluate.metrics import leave_one_out_neighbours
from stylefinder.evaluate.text_retrieval import meaning_metrics, text_metrics
from stylefinder.index.pg_connect import is_database_url, shown_location
from stylefinder.index.store import IndexStore
from stylefinder.index.stores import open_store


@dataclass
class RetrievalEvaluation:
    """Metrics of one leave-one-out run, plus what the report needs to draw."""

    metrics: dict[str, float]
    per_class: list[dict]
    classes: list[str]
    confusion: np.ndarray  # (classes, classes): query label -> top-1 result label, counts
    ks: list[int]
    items: int
    neighbours: np.ndarray = field(repr=False)  # (items, max k) rows of the nearest others
    labels: np.ndarray = field(repr=False)
    item_ids: list[str] = field(repr=False, default_factory=list)
    dim: int = 0  # the dimension of the space scored (the tuned one when there is one)
    tuned: bool = False  # scored through the index's learned projection
    warnings: list[str] = field(default_factory=list)  # what makes the numbers read too high
    # full-text search of the title column for each label's name (`evaluate.text_retrieval`)
    text_metrics: dict[str, float] | None = None
    title_column: str | None = None
    # a CLIP-family backbone's embedded label names against the image vectors
    meaning_metrics: dict[str, float] | None = None


def retrieval_metrics(
    vectors: np.ndarray, labels: Sequence[str], ks: Sequence[int] = (1, 5, 10)
) -> RetrievalEvaluation:
    """precision@k (share of the k results with the query's label), recall@k (a same-label item
    within the top k), mAP@10, per-class precision@5 and the query-label x top-1-label confusion.

    Example:
        >>> v = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
        >>> retrieval_metrics(v, ["a", "a", "b", "b"], ks=[1]).metrics["precision@1"]
        1.0
    """
    labels = np.asarray(labels)
    if len(labels) != len(vectors) or len(labels) < 2:
        raise ValueError("need at least two labeled vectors, one label per vector")
    ks = sorted(set(int(k) for k in ks))
    neighbours = leave_one_out_neighbours(vectors, max([*ks, 10]))
    relevant = labels[neighbours] == labels[:, None]  # (n, depth)
    metrics = neighbour_metrics(neighbours, labels, ks)

    classes = sorted(set(labels.tolist()))
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), np.int64)
    label_index = np.array([index[c] for c in labels])
    np.add.at(confusion, (label_index, label_index[neighbours[:, 0]]), 1)
    k5 = min(5, relevant.shape[1])
    per_class = [
        {
            "label": c,
            "items": int((labels == c).sum()),
            f"precision@{k5}": float(relevant[labels == c, :k5].mean()),
            "top1_accuracy": float(confusion[i, i] / max(1, confusion[i].sum())),
        }
        for i, c in enumerate(classes)
    ]
    return RetrievalEvaluation(
        metrics, per_class, classes, confusion, ks, len(labels), neighbours, labels
    )


def neighbour_metrics(
    neighbours: np.ndarray, labels: np.ndarray, ks: Sequence[int]
) -> dict[str, float]:
    """precision@k and recall@k for each k, and mAP@10, from each item's ranked other items
    (`neighbours`, (n, depth) rows, depth >= 10 and >= max k).

    Example:
        >>> neighbour_metrics(np.array([[1], [0]]), np.array(["a", "a"]), [1])["precision@1"]
        1.0
    """
    relevant = labels[neighbours] == labels[:, None]
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"precision@{k}"] = float(relevant[:, :k].mean())
        metrics[f"recall@{k}"] = float(relevant[:, :k].any(axis=1).mean())
    metrics["mAP@10"] = float(_average_precision(relevant[:, :10], labels).mean())
    return metrics


def evaluate_index(
    index_dir: str | Path,
    *,
    label_column: str,
    ks: Sequence[int] = (1, 5, 10),
    raw: bool = False,
    title_column: str | None = None,
) -> RetrievalEvaluation:
    """Leave-one-out evaluation of the labeled items of an index (a directory, or a PostgreSQL
    URL; items without the label column are left out), in the space queries use: through the
    index's tuned projection if it has one, unless `raw`. With `title_column`, also the
    text-to-image metrics of full-text search on that column (`text_metrics`); with a
    CLIP-family backbone, those of its embedded label names (`meaning_metrics`)."""
    from stylefinder.recommend.projection import Projection, labeled_rows

    if is_database_url(str(index_dir)):
        labeled, vectors, projection = _labeled_in_database(str(index_dir), label_column)
        projection = None if raw else projection
    else:
        snapshot = IndexStore.open(index_dir).snapshot()
        by_row = snapshot.items.by_row()
        rows = labeled_rows(by_row, label_column)
        labeled = [by_row[r] for r in rows]
        vectors = np.asarray(snapshot.vectors[rows])
        projection = None if raw else Projection.load(index_dir)
    item_ids = [item.id for item in labeled]
    labels = [str(item.metadata[label_column]) for item in labeled]
    raw_vectors = vectors
    if projection is not None:
        vectors = projection.apply(vectors)
    result = retrieval_metrics(vectors, labels, ks)
    space = open_store(index_dir).header.space
    if embeds_text(space.backbone):  # text and images in one (the raw) space
        encoder = text_encoder_for_space(space)
        result.meaning_metrics = meaning_metrics(raw_vectors, labels, encoder.encode, ks)
    result.item_ids = item_ids
    result.dim, result.tuned = int(vectors.shape[1]), projection is not None
    if title_column is not None:
        titles = [str(item.metadata.get(title_column) or "") for item in labeled]
        result.text_metrics = text_metrics(titles, labels, ks)
        result.title_column = title_column
    if projection is not None and _learned_from(projection.info, index_dir, label_column):
        result.warnings.append(
            f"the projection was tuned on these same {label_column!r} labels of this index, "
            "so these numbers measure how well it memorized them, not how it does on new "
            "items: compare with --raw, tune on another index (`stylefinder tune "
            "--train-index OTHER`) or run `stylefinder eval fashion-mnist` for an honest figure"
        )
    return result


def _labeled_in_database(url: str, label_column: str):
    """A PostgreSQL catalog's labeled items and their vectors, read once, and the catalog's
    tuned projection (None when it has none)."""
    from stylefinder.index.pg_catalog import PgCatalog
    from stylefinder.recommend.pg_tuned import TunedSpace, stored_projection
    from stylefinder.recommend.projection import labeled_rows

    with PgCatalog.open(url) as catalog:
        items = catalog.items(catalog.ids())
        labeled = [items[r] for r in labeled_rows(items, label_column)]
        vectors = catalog.vectors_of([item.id for item in labeled])
        space = TunedSpace.of(catalog)
        projection = None if space is None else stored_projection(catalog, space)
    return labeled, vectors, projection


def _learned_from(info: dict, index_dir: str | Path, label_column: str) -> bool:
    """True when a projection with training `info` learned from `label_column` of this index."""
    if info.get("label_column") != label_column:
        return False
    trained_on = info.get("trained_on")
    if trained_on is None:
        return True
    if is_database_url(str(index_dir)):
        return trained_on == shown_location(index_dir)
    return Path(trained_on) == Path(index_dir).resolve()


def _average_precision(relevant: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AP over the first columns of `relevant`, normalized by how many relevant items exist
    (capped at the depth), so a perfect ranking scores 1."""
    depth = relevant.shape[1]
    hits = np.cumsum(relevant, axis=1)
    precision_at_i = hits / np.arange(1, depth + 1)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    available = np.minimum(counts[inverse] - 1, depth)  # same-label items other than the query
    total = (precision_at_i * relevant).sum(axis=1)
    return np.divide(total, available, out=np.zeros(len(total)), where=available > 0)
