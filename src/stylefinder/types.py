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

    def describe(self) -> str:
        return (
            f"{self.backbone} ({self.pooling} pooling, {self.dim}-d, "
            f"weights {self.weights_fingerprint})"
        )


@dataclass(frozen=True)
class Item:
    """One catalog item as the index records it. `path` is relative to the catalog root."""

    id: str
    path: str
    hash: str
    size: int = 0
    mtime_ns: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    added_at: str = ""
    updated_at: str = ""
