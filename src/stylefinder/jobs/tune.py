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

from stylefinder.errors import IndexStateError
from stylefinder.index.header import utc_now
from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.index.pg_connect import shown_location
from stylefinder.index.store import IndexStore
from stylefinder.jobs.targets import in_database
from stylefinder.recommend import pg_tuned
from stylefinder.recommend.projection import (
    PROJECTION_FILE,
    TUNED_FOLDER,
    Projection,
    fit_mlp_projection,
    fit_projection,
    labeled_rows,
)
from stylefinder.recommend.tuned_space import tuned_space
from stylefinder.types import EmbeddingSpace


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
    store it in `index_dir`, an index directory or a PostgreSQL catalog's URL (either may be
    either); engines pick it up on their next reload.

    Example:
        >>> tune_index("shop-index", label_column="category")  # doctest: +SKIP
        >>> tune_index("postgresql:///shop", label_column="category")  # doctest: +SKIP
    """
    source_location = train_index or index_dir
    space, labels, vectors = _labeled(source_location, label_column)
    if in_database(index_dir):
        with PgCatalog.open(str(index_dir)) as catalog:
            _check_space(catalog.header.space, space)
    else:
        IndexStore.open(index_dir).check_space(space)
    if method == "mlp":
        projection = fit_mlp_projection(
            vectors, labels, dim=dim or 128, epochs=epochs, progress=progress
        )
    elif method == "linear":
        projection = fit_projection(vectors, labels, dim=dim or 64)
    else:
        raise ValueError(f"unknown tuning method {method!r}; use mlp or linear")
    projection.info.update(
        label_column=label_column, trained_on=_trained_on(source_location), trained_at=utc_now()
    )
    if in_database(index_dir):
        with PgCatalog.open(str(index_dir)) as catalog:
            pg_tuned.publish(catalog, projection)  # queries reload and search the tuned space
        return projection
    target = IndexStore.open(index_dir)
    with target.writer() as writer:  # under the lock; the commit tells readers to reload
        projection.save(target.directory)
        writer.set_state("projection", json.dumps(projection.info))
    tuned_space(target.directory, target.snapshot(), projection)  # so that queries only read it
    return projection


def reset_projection(index_dir: str | Path) -> bool:
    """Remove the index's projection; returns whether there was one."""
    if in_database(index_dir):
        with PgCatalog.open(str(index_dir)) as catalog:
            return pg_tuned.reset(catalog)
    store = IndexStore.open(index_dir)
    with store.writer() as writer:
        path = Path(store.directory) / PROJECTION_FILE
        existed = path.is_file()
        path.unlink(missing_ok=True)
        shutil.rmtree(Path(store.directory) / TUNED_FOLDER, ignore_errors=True)
        writer.set_state("projection", "")
    return existed


def _labeled(
    location: str | Path, label_column: str
) -> tuple[EmbeddingSpace, list[str], np.ndarray]:
    """The space, labels and vectors of the labeled items of an index or a catalog."""
    if in_database(location):
        with PgCatalog.open(str(location)) as catalog:
            items = catalog.items(catalog.ids())
            labeled = [items[r] for r in labeled_rows(items, label_column)]
            vectors = catalog.vectors_of([item.id for item in labeled])
            labels = [str(item.metadata[label_column]) for item in labeled]
            return catalog.header.space, labels, vectors
    store = IndexStore.open(location)
    snapshot = store.snapshot()
    by_row = snapshot.items.by_row()
    rows = labeled_rows(by_row, label_column)
    labels = [str(by_row[r].metadata[label_column]) for r in rows]
    return store.header.space, labels, np.asarray(snapshot.vectors[rows])


def _check_space(mine: EmbeddingSpace, theirs: EmbeddingSpace) -> None:
    if mine != theirs:
        raise IndexStateError(
            f"the training vectors ({theirs.backbone}, {theirs.dim}-d) are not comparable with "
            f"the catalog's ({mine.backbone}, {mine.dim}-d)"
        )


def _trained_on(location: str | Path) -> str:
    """Where the training labels came from: a directory's absolute path, a URL described."""
    return shown_location(location) if in_database(location) else str(Path(location).resolve())
