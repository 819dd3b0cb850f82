"""Small value types shared by the pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EmbeddingSpace:
    """What makes two vectors comparable: same backbone, pooling, weights and dimension."""

    backbone: str
    pooling: str
    weights_fingerprint: str
    dim: int
    precision: str = "fp32"

    def describe(self) -> str:
        return (
            f"{self.backbone} ({self.pooling} pooling, {self.dim}-d, {self.precision}, "
            f"weights {self.weights_fingerprint})"
        )


@dataclass(frozen=True)
class Item:
    """One catalog item as the index records it.

    `source` is "catalog" for files found by `stylefinder index` (their `path` is relative to the
    catalog folder) and "api" for items added through `Engine.add_item` (their image is kept in
    the index directory and `path` is relative to it).
    """

    id: str
    path: str
    hash: str
    size: int = 0
    mtime_ns: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    added_at: str = ""
    updated_at: str = ""
    source: str = "catalog"
