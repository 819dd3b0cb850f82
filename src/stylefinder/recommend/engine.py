"""The query side: open an index once, then ask for items that look like a photo or an item.

Example:
    >>> engine = Engine.open("shop-index")  # doctest: +SKIP
    >>> [r.id for r in engine.recommend("upload.jpg", k=5)]  # doctest: +SKIP
    ['dress-12', 'dress-40', 'dress-7', 'dress-3', 'dress-91']
    >>> engine.similar("dress-12", k=3)[0].score  # doctest: +SKIP
    0.93
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from stylefinder.catalog.images import ImageSource
from stylefinder.catalog.scan import bytes_hash, file_hash
from stylefinder.embed.runner import Embedder
from stylefinder.errors import BadImageError, UnknownItemError
from stylefinder.index.search import top_k
from stylefinder.index.store import IndexStore, Snapshot
from stylefinder.recommend.filters import Filters, allowed_rows, column_values
from stylefinder.types import EmbeddingSpace, Item


@dataclass(frozen=True)
class Recommendation:
    """One result: the item's id, its image path, cosine similarity and metadata."""

    id: str
    path: str
    score: float
    metadata: dict[str, str]

    def to_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "score": self.score, "metadata": self.metadata}


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

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Engine:
    """Recommendations from one index. The model loads on first use of an image query.

    Thread-safe for queries; `reload()` picks up commits made by other writers.
    """

    def __init__(
        self,
        store: IndexStore,
        *,
        runtime: str = "onnx",
        weights: str | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.weights = weights
        self._embedder = embedder
        self._lock = threading.Lock()
        self._snapshot = store.snapshot()
        self._by_hash: dict[str, list[int]] | None = None

    @classmethod
    def open(
        cls, index_dir: str | Path, *, runtime: str = "onnx", weights: str | None = None
    ) -> Engine:
        """Open the index at `index_dir` for queries."""
        return cls(IndexStore.open(index_dir), runtime=runtime, weights=weights)

    # -- state -----------------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def __len__(self) -> int:
        return len(self._snapshot)

    def reload(self) -> bool:
        """Re-read the index if another writer committed since; True when it changed."""
        if self.store.generation() == self._snapshot.generation:
            return False
        snapshot = self.store.snapshot()
        with self._lock:
            self._snapshot, self._by_hash = snapshot, None
        return True

    @property
    def embedder(self) -> Embedder:
        """The index's backbone, loaded once on first use."""
        with self._lock:
            if self._embedder is None:
                header = self.store.header
                embedder = Embedder(
                    header.backbone,
                    pooling=header.pooling,
                    weights=self.weights,
                    runtime=self.runtime,
                )
                self.store.check_space(embedder.space)
                self._embedder = embedder
            return self._embedder

    def item(self, item_id: str) -> Item:
        """The catalog item `item_id`, or `UnknownItemError`."""
        snapshot = self._snapshot
        row = snapshot.row_of.get(item_id)
        if row is None:
            raise UnknownItemError(f"no item {item_id!r} in the index")
        return snapshot.items[row]

    def image_path(self, item: Item) -> str:
        """Where the item's image file is (absolute when the catalog folder is known)."""
        root = self._snapshot.catalog_root
        return str(Path(root) / item.path) if root else item.path

    def info(self) -> IndexInfo:
        """Backbone, size and dates of the index."""
        snapshot, header = self._snapshot, self.store.header
        size = sum(p.stat().st_size for p in self.store.directory.iterdir() if p.is_file())
        return IndexInfo(
            directory=str(self.store.directory),
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
        )

    # -- queries ---------------------------------------------------------------------------------

    def embed(self, image: ImageSource) -> np.ndarray:
        """The unit vector of an image (path, bytes or PIL image) in this index's space."""
        return self.embedder.embed_one(image)

    def recommend(
        self, image: ImageSource, k: int = 5, *, filters: Filters | None = None
    ) -> list[Recommendation]:
        """The `k` catalog items most similar to `image` that pass `filters`, best first.

        A catalog file byte-identical to the query is never returned.
        """
        _check_k(k)
        digest = _content_hash(image)
        vector = self.embed(image)
        snapshot = self._snapshot
        exclude = self._rows_with_hash(snapshot, digest) if digest else []
        return self.search_vector(
            vector, k, exclude_rows=exclude, filters=filters, snapshot=snapshot
        )

    def similar(
        self, item_id: str, k: int = 5, *, filters: Filters | None = None
    ) -> list[Recommendation]:
        """More like this: the `k` items most similar to catalog item `item_id`, without it."""
        _check_k(k)
        snapshot = self._snapshot
        row = snapshot.row_of.get(item_id)
        if row is None:
            raise UnknownItemError(f"no item {item_id!r} in the index")
        vector = np.array(snapshot.vectors[row])
        exclude = [row, *self._rows_with_hash(snapshot, snapshot.items[row].hash)]
        return self.search_vector(
            vector, k, exclude_rows=exclude, filters=filters, snapshot=snapshot
        )

    def browse(
        self, *, offset: int = 0, limit: int = 20, filters: Filters | None = None
    ) -> tuple[list[Item], int]:
        """A page of catalog items (in index order) that pass `filters`, and how many pass."""
        snapshot = self._snapshot
        rows = np.flatnonzero(allowed_rows(snapshot.items, filters))
        page = rows[max(0, offset) : max(0, offset) + max(0, limit)]
        return [snapshot.items[row] for row in page], len(rows)

    def filter_columns(self) -> dict[str, list[str]]:
        """Metadata columns with few enough distinct values to filter on, and their values."""
        return column_values(self._snapshot.items)

    def search_vector(
        self,
        vector: np.ndarray,
        k: int = 5,
        *,
        space: EmbeddingSpace | None = None,
        exclude_rows: list[int] | None = None,
        filters: Filters | None = None,
        snapshot: Snapshot | None = None,
    ) -> list[Recommendation]:
        """Nearest items to a unit vector that pass `filters`; `space` must match the index's."""
        if space is not None:
            self.store.check_space(space)
        snapshot = snapshot or self._snapshot
        vector = np.asarray(vector, np.float32).reshape(-1)
        if vector.shape != (snapshot.header.dim,):
            raise ValueError(
                f"query vector has {vector.size} dimensions; the index has {snapshot.header.dim}"
            )
        mask = None
        if filters:
            mask = ~allowed_rows(snapshot.items, filters)
        if exclude_rows:
            mask = np.zeros(len(snapshot), bool) if mask is None else mask
            mask[exclude_rows] = True
        rows, scores = top_k(snapshot.vectors, vector, k, exclude=mask)
        pairs = zip(rows, scores, strict=True)
        return [self._result(snapshot.items[row], float(score)) for row, score in pairs]

    def _result(self, item: Item, score: float) -> Recommendation:
        return Recommendation(item.id, self.image_path(item), round(score, 6), dict(item.metadata))

    def _rows_with_hash(self, snapshot: Snapshot, digest: str) -> list[int]:
        by_hash = self._by_hash
        if by_hash is None or snapshot is not self._snapshot:
            by_hash = {}
            for row, item in enumerate(snapshot.items):
                by_hash.setdefault(item.hash, []).append(row)
            if snapshot is self._snapshot:
                self._by_hash = by_hash
        return by_hash.get(digest, [])


def _content_hash(image: ImageSource) -> str | None:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes_hash(bytes(image))
    if isinstance(image, Image.Image):
        return None
    try:
        return file_hash(image)
    except FileNotFoundError as exc:
        raise BadImageError(f"{image}: file not found") from exc
    except OSError as exc:
        raise BadImageError(f"{image}: cannot read file ({exc})") from exc


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
