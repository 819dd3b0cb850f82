"""A summary of an index for people and tools (`stylefinder info`, `GET /v1/info`).

Example:
    >>> index_info(view, shoppers=3, events=40).items  # doctest: +SKIP
    1000
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stylefinder.recommend.columns import describe_columns
from stylefinder.recommend.view import CatalogView


@dataclass(frozen=True)
class IndexInfo:
    """A summary of an index for people and tools."""

    directory: str
    items: int
    backbone: str
    pooling: str
    dim: int
    weights_fingerprint: str
    version: str
    created_at: str
    updated_at: str
    catalog_root: str | None
    generation: int
    size_bytes: int
    tuned: dict | None = None  # the projection's label column, dimension and training time
    columns: list[dict] = field(default_factory=list)  # name, kind, distinct, filled
    shoppers: int = 0
    events: int = 0
    restorable_generation: int | None = None  # what `stylefinder restore` brings back
    search: dict = field(default_factory=dict)  # the vector index: kind, parameters, recall

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def index_info(view: CatalogView, *, shoppers: int, events: int) -> IndexInfo:
    """Backbone, size and dates of the view's index (`size_bytes`: the disk space its files
    take, the tuned search space and added images included; a matrix file's unwritten spare
    rows take none)."""
    store, snapshot, header = view.store, view.snapshot, view.store.header
    size = sum(disk_bytes(p) for p in store.directory.rglob("*") if p.is_file())
    projection, point = view.projection, store.restore_point()
    tuned = None
    if projection is not None:
        tuned = {key: projection.info.get(key) for key in ("label_column", "trained_at")}
        tuned.update(dim=projection.dim, classifier=projection.classifier is not None)
    columns = [
        {"name": c.name, "kind": c.kind, "distinct": c.distinct, "filled": c.filled}
        for c in describe_columns(snapshot.items)
    ]
    return IndexInfo(
        directory=str(store.directory),
        items=len(snapshot),
        backbone=header.backbone,
        pooling=header.pooling,
        dim=header.dim,
        weights_fingerprint=header.weights_fingerprint,
        version=header.version,
        created_at=header.created_at,
        updated_at=snapshot.state.get("updated_at", header.created_at),
        catalog_root=snapshot.catalog_root,
        generation=snapshot.generation,
        size_bytes=size,
        tuned=tuned,
        columns=columns,
        shoppers=shoppers,
        events=events,
        restorable_generation=point.generation if point is not None else None,
        search=view.vector_index.params,
    )


def disk_bytes(path: Path) -> int:
    """The disk space `path` takes (its allocated blocks where the system reports them).

    Example:
        >>> disk_bytes(Path(__file__)) > 0
        True
    """
    stat = path.stat()
    blocks = getattr(stat, "st_blocks", None)
    return stat.st_size if blocks is None else blocks * 512
