"""Tuning an index's search space: learn a projection from its labels, store it, and write
the projected space with its vector index (so that queries only read it).

Example:
    >>> tune_index("shop-index", label_column="category")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from stylefinder.index.header import utc_now
from stylefinder.index.store import IndexStore
from stylefinder.recommend.projection import (
    PROJECTION_FILE,
    TUNED_FOLDER,
    Projection,
    fit_mlp_projection,
    fit_projection,
    labeled_rows,
)
from stylefinder.recommend.tuned_space import tuned_space


def tune_index(
    index_dir: str | Path,
    *,
    label_column: str,
    train_index: str | Path | None = None,
    method: str = "mlp",
    dim: int | None = None,
    epochs: int = 12,
    progress: bool = False,
) -> Projection:
    """Learn a projection from the labels of `train_index` (default: the index itself) and
    store it in `index_dir`; engines pick it up on their next reload.

    Example:
        >>> tune_index("shop-index", label_column="category")  # doctest: +SKIP
    """
    target = IndexStore.open(index_dir)
    source = IndexStore.open(train_index) if train_index else target
    target.check_space(source.header.space)
    snapshot = source.snapshot()
    by_row = snapshot.items.by_row()
    rows = labeled_rows(by_row, label_column)
    labels = [str(by_row[r].metadata[label_column]) for r in rows]
    vectors = np.asarray(snapshot.vectors[rows])
    if method == "mlp":
        projection = fit_mlp_projection(
            vectors, labels, dim=dim or 128, epochs=epochs, progress=progress
        )
    elif method == "linear":
        projection = fit_projection(vectors, labels, dim=dim or 64)
    else:
        raise ValueError(f"unknown tuning method {method!r}; use mlp or linear")
    projection.info.update(
        label_column=label_column,
        trained_on=str(Path(source.directory).resolve()),
        trained_at=utc_now(),
    )
    with target.writer() as writer:  # under the lock; the commit tells readers to reload
        projection.save(target.directory)
        writer.set_state("projection", json.dumps(projection.info))
    tuned_space(target.directory, target.snapshot(), projection)  # so that queries only read it
    return projection


def reset_projection(index_dir: str | Path) -> bool:
    """Remove the index's projection; returns whether there was one."""
    store = IndexStore.open(index_dir)
    with store.writer() as writer:
        path = Path(store.directory) / PROJECTION_FILE
        existed = path.is_file()
        path.unlink(missing_ok=True)
        shutil.rmtree(Path(store.directory) / TUNED_FOLDER, ignore_errors=True)
        writer.set_state("projection", "")
    return existed
