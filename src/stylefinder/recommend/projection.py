"""A projection of the frozen embeddings learned from a shop's own labels.

Within-class whitening, then the most discriminative directions (64 by default): directions
along which items of one label vary are shrunk, so that neighbours share labels more often.
Vectors are L2-normalized after the projection. It is stored in the index directory as
`projection.npz` (arrays only, no pickle) and applied to catalog and query vectors alike.

Example:
    >>> projection = fit_projection(vectors, labels)  # doctest: +SKIP
    >>> projection.apply(vectors).shape  # doctest: +SKIP
    (1000, 64)
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROJECTION_FILE = "projection.npz"


@dataclass
class Projection:
    """x -> normalize((x - mean) @ matrix)."""

    mean: np.ndarray  # (D,)
    matrix: np.ndarray  # (D, d)
    info: dict = field(default_factory=dict)  # training metadata, saved with it

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def apply(self, vectors: np.ndarray, *, block: int = 65_536) -> np.ndarray:
        """Project unit vectors (N, D) or (D,) to unit vectors (N, d) or (d,)."""
        vectors = np.asarray(vectors, np.float32)
        single = vectors.ndim == 1
        rows = vectors[None] if single else vectors
        out = np.empty((len(rows), self.dim), np.float32)
        for start in range(0, len(rows), block):
            part = (rows[start : start + block] - self.mean) @ self.matrix
            norms = np.linalg.norm(part, axis=1, keepdims=True)
            out[start : start + block] = part / np.maximum(norms, 1e-12)
        return out[0] if single else out

    def save(self, directory: str | Path) -> Path:
        """Write projection.npz into `directory` atomically."""
        from stylefinder.index.store import atomic_write

        target = Path(directory) / PROJECTION_FILE
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean, matrix=self.matrix, info=json.dumps(self.info))
        atomic_write(target, buffer.getvalue())
        return target

    @classmethod
    def load(cls, directory: str | Path) -> Projection | None:
        """The projection stored in `directory`, or None when there is none."""
        path = Path(directory) / PROJECTION_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            info = json.loads(str(data["info"]))
            return cls(data["mean"].astype(np.float32), data["matrix"].astype(np.float32), info)


def fit_projection(
    vectors: np.ndarray,
    labels: list[str] | np.ndarray,
    *,
    dim: int = 64,
    shrinkage: float = 0.1,
) -> Projection:
    """Learn within-class whitening, then keep the `dim` most discriminative directions.

    Directions along which items of one label vary are shrunk to unit variance (whitening of the
    within-class covariance, blended with a scaled identity by `shrinkage` so rare labels and
    unexercised directions stay stable); in that space the directions of largest total variance
    are those along which labels differ most (as in LDA), and the first `dim` are kept.
    """
    x = np.asarray(vectors, np.float64)
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    if len(x) != len(labels) or len(classes) < 2:
        raise ValueError("tuning needs labeled vectors of at least two different labels")
    mean = x.mean(axis=0)
    centered = x - mean
    width = x.shape[1]
    within = np.zeros((width, width))
    for label in classes:
        members = centered[labels == label]
        offsets = members - members.mean(axis=0)
        within += offsets.T @ offsets
    within /= len(x)
    within = (1 - shrinkage) * within + shrinkage * np.trace(within) / width * np.eye(width)
    values, basis = np.linalg.eigh(within)
    whitening = basis @ np.diag(1.0 / np.sqrt(np.maximum(values, 1e-12))) @ basis.T
    whitened = centered @ whitening
    total, directions = np.linalg.eigh(whitened.T @ whitened / len(x))
    keep = min(dim, width)
    order = np.argsort(total)[::-1][:keep]
    matrix = (whitening @ directions[:, order]).astype(np.float32)
    info = {
        "method": "within-class whitening + discriminant directions",
        "dim": keep,
        "shrinkage": shrinkage,
        "items": len(x),
        "labels": len(classes),
    }
    return Projection(mean.astype(np.float32), matrix, info)


def tune_index(
    index_dir: str | Path,
    *,
    label_column: str,
    train_index: str | Path | None = None,
    dim: int = 64,
    shrinkage: float = 0.1,
) -> Projection:
    """Learn a projection from the labels of `train_index` (default: the index itself) and
    store it in `index_dir`; engines pick it up on their next reload.

    Example:
        >>> tune_index("shop-index", label_column="category")  # doctest: +SKIP
    """
    from stylefinder.index.store import IndexStore, utc_now

    target = IndexStore.open(index_dir)
    source = IndexStore.open(train_index) if train_index else target
    target.check_space(source.header.space)
    snapshot = source.snapshot()
    rows = [r for r, item in enumerate(snapshot.items) if item.metadata.get(label_column)]
    labels = [snapshot.items[r].metadata[label_column] for r in rows]
    projection = fit_projection(
        np.asarray(snapshot.vectors[rows]), labels, dim=dim, shrinkage=shrinkage
    )
    projection.info.update(
        label_column=label_column,
        trained_on=str(Path(source.directory).resolve()),
        trained_at=utc_now(),
    )
    with target.writer() as writer:  # under the lock; the commit tells readers to reload
        projection.save(target.directory)
        writer.set_state("projection", json.dumps(projection.info))
    return projection


def reset_projection(index_dir: str | Path) -> bool:
    """Remove the index's projection; returns whether there was one."""
    from stylefinder.index.store import IndexStore

    store = IndexStore.open(index_dir)
    with store.writer() as writer:
        path = Path(store.directory) / PROJECTION_FILE
        existed = path.is_file()
        path.unlink(missing_ok=True)
        writer.set_state("projection", "")
    return existed
