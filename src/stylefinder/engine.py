"""The query side: open an index once, then ask for items that look like a photo or an item.

Example:
    >>> engine = Engine.open("shop-index")  # doctest: +SKIP
    >>> [r.id for r in engine.recommend("upload.jpg", k=5)]  # doctest: +SKIP
    ['dress-12', 'dress-40', 'dress-7', 'dress-3', 'dress-91']
    >>> engine.similar("dress-12", k=3)[0].score  # doctest: +SKIP
    0.93
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from stylefinder.catalog.images import DEFAULT_MAX_PIXELS, ImageSource, load_image
from stylefinder.catalog.scan import bytes_hash, file_hash
from stylefinder.embed.runner import Embedder
from stylefinder.errors import BadImageError, StaleSnapshotError, UnknownItemError
from stylefinder.index.store import IndexStore, Snapshot, utc_now
from stylefinder.index.vector_index import ExactIndex, VectorIndex
from stylefinder.io.files import atomic_write
from stylefinder.recognize.colours import dominant_colours
from stylefinder.recognize.recognition import (
    CATEGORY_COLUMN,
    COLOURS_COLUMN,
    Recognition,
    image_colours,
    top_categories,
)
from stylefinder.recognize.taxonomy import UNKNOWN, predict_garments
from stylefinder.recommend.columns import describe_columns
from stylefinder.recommend.filters import Filters, MetadataColumns, column_values
from stylefinder.recommend.personal import (
    Profile,
    ProfileSettings,
    build_profile,
    check_diversity,
    popularity_vector,
    rank,
)
from stylefinder.recommend.projection import Projection
from stylefinder.recommend.tuned_space import tuned_space
from stylefinder.shoppers.base import CsvSource, Event, EventStore, ImportSummary
from stylefinder.shoppers.sqlite import SqliteEventStore
from stylefinder.types import EmbeddingSpace, Item

T = TypeVar("T")


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
    tuned: dict | None = None  # the projection's label column, dimension and training time
    columns: list[dict] = field(default_factory=list)  # name, kind, distinct, filled
    shoppers: int = 0
    events: int = 0
    restorable_generation: int | None = None  # what `stylefinder restore` brings back
    search: dict = field(default_factory=dict)  # the vector index: kind, parameters, recall

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _reading_again_when_renumbered(method: Callable[..., T]) -> Callable[..., T]:
    """Run an `Engine` query; when a compaction renumbered the rows of its snapshot meanwhile
    (another writer committed), read the index again and run it once more."""

    @functools.wraps(method)
    def query(self: Engine, *args, **kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except StaleSnapshotError:
            if not self.reload():
                raise
            return method(self, *args, **kwargs)

    return query


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
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.weights = weights
        self.max_pixels = max_pixels
        self._embedder = embedder
        self._lock = threading.Lock()
        self._snapshot = store.snapshot()
        self._projected: tuple[Snapshot, Projection | None, np.ndarray, VectorIndex] | None
        self._projected = None
        self._space_lock = threading.RLock()  # concurrent first queries project only once
        self._columns: tuple[Snapshot, dict[str, list[str]]] | None = None
        self._metadata_columns: tuple[Snapshot, MetadataColumns] | None = None
        self._event_store: EventStore | None = None
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()  # query vectors by content
        self._recent_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        index_dir: str | Path,
        *,
        runtime: str = "onnx",
        weights: str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Engine:
        """Open the index at `index_dir` for queries."""
        store = IndexStore.open(index_dir)
        return cls(store, runtime=runtime, weights=weights, max_pixels=max_pixels)

    # -- state -----------------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def __len__(self) -> int:
        return len(self._snapshot)

    def reload(self, *, latest: Snapshot | None = None) -> bool:
        """Re-read the index if another writer committed since; True when it changed.
        `latest`, a snapshot this engine's own writer just committed, is taken as it is when
        nothing was committed after it."""
        if self.store.generation() == self._snapshot.generation:
            return False
        snapshot = self.store.snapshot(previous=latest or self._snapshot)
        with self._lock:
            self._snapshot, self._projected = snapshot, None
        return True

    @property
    def projection(self) -> Projection | None:
        """The projection learned by `stylefinder tune`, if the index has one."""
        return self._search_space(self._snapshot)[0]

    def _search_space(self, snapshot: Snapshot) -> tuple[Projection | None, np.ndarray]:
        """The projection and the matrix searched for `snapshot` (see `_space`)."""
        return self._space(snapshot)[:2]

    def _vector_index(self, snapshot: Snapshot) -> VectorIndex:
        """The vector index searched for `snapshot` (see `_space`)."""
        return self._space(snapshot)[2]

    def _space(self, snapshot: Snapshot) -> tuple[Projection | None, np.ndarray, VectorIndex]:
        """The projection, searched matrix and vector index for `snapshot`: the committed
        matrix and index, or on a tuned index the projected ones, which the first engine to
        need them writes to the index (`tuned_space`) and later ones memory-map. Cached per
        snapshot; concurrent first queries build them once."""
        with self._space_lock:
            cached = self._projected
            if cached is not None and cached[0] is snapshot:
                return cached[1:]
            projection = Projection.load(self.store.directory)
            if projection is None:
                matrix = snapshot.vectors
                index = snapshot.index if snapshot.index is not None else ExactIndex(matrix)
            else:
                matrix, index = tuned_space(self.store.directory, snapshot, projection)
            if snapshot is self._snapshot:
                self._projected = (snapshot, projection, matrix, index)
            return projection, matrix, index

    @property
    def embedder(self) -> Embedder:
        """The index's backbone, loaded once on first use: on the onnx runtime from the graph
        exported for the index's weights when there is one (torch is not imported), else
        loaded (and exported) through torch."""
        with self._lock:
            if self._embedder is None:
                header = self.store.header
                embedder = None
                if self.runtime == "onnx" and self.weights is None:
                    embedder = Embedder.exported(header.space, max_pixels=self.max_pixels)
                embedder = embedder or Embedder(
                    header.backbone,
                    pooling=header.pooling,
                    weights=self.weights,
                    runtime=self.runtime,
                    precision=header.precision,
                    max_pixels=self.max_pixels,
                )
                self.store.check_space(embedder.space)
                self._embedder = embedder
            return self._embedder

    @_reading_again_when_renumbered
    def item(self, item_id: str) -> Item:
        """The catalog item `item_id`, or `UnknownItemError`."""
        snapshot = self._snapshot
        row = snapshot.row_of.get(item_id)
        if row is None:
            raise UnknownItemError(f"no item {item_id!r} in the index")
        return snapshot.items[row]

    def image_path(self, item: Item) -> str:
        """Where the item's image file is (absolute when its folder is known)."""
        if item.source == "api":
            return str(self.store.directory / item.path)
        root = self._snapshot.catalog_root
        return str(Path(root) / item.path) if root else item.path

    # -- writes ----------------------------------------------------------------------------------

    def add_item(
        self, item_id: str, image: bytes, metadata: Mapping[str, object] | None = None
    ) -> tuple[Item, bool]:
        """Add or replace item `item_id` with an image (file bytes) and metadata.

        The image is kept in the index directory under its content hash (never under a name a
        client chose) and the change is committed atomically. Returns (item, created).

        Example:
            >>> item, created = engine.add_item("sku-1", open("a.jpg", "rb").read(),
            ...                                 {"category": "Dress"})  # doctest: +SKIP
        """
        item_id = _check_item_id(item_id)
        clean = _check_metadata(metadata or {})
        image = bytes(image)
        decoded = load_image(image, max_pixels=self.embedder.max_pixels)
        vector = self.embedder.embed_one(decoded)
        clean = {**self._recognized(decoded, vector), **clean}  # values given are kept
        digest = bytes_hash(image)
        relative = f"{API_IMAGES}/{digest}{_extension(image)}"
        _write_once(self.store.directory / relative, image)
        with self.store.writer(previous=self._snapshot) as writer:
            row = writer.base.row_of.get(item_id)
            old = writer.base.items[row] if row is not None else None
            now = utc_now()
            item = Item(
                id=item_id,
                path=relative,
                hash=digest,
                size=len(image),
                metadata=clean,
                added_at=old.added_at if old else now,
                updated_at=now,
                source="api",
            )
            writer.put(item, vector)
        self.reload(latest=writer.base)
        if old is not None and old.source == "api" and old.path != relative:
            self._forget_image(old.path)
        return item, old is None

    def _recognized(self, image: Image.Image, vector: np.ndarray) -> dict[str, str]:
        """The metadata indexing names for a new item, as `stylefinder index` does: its
        `colours`, and its `category_pred` when the index has a classifier."""
        found = {}
        colours = image_colours(image)
        if colours:
            found[COLOURS_COLUMN] = colours
        projection = self.projection
        if projection is not None and projection.classifier is not None:
            probabilities = projection.probabilities(vector.reshape(1, -1))
            best = top_categories(probabilities, projection.classifier.labels, top=1)
            found[CATEGORY_COLUMN] = best[0][0][0]
        return found

    def remove_item(self, item_id: str) -> Item:
        """Remove item `item_id` (committed atomically); returns what was removed."""
        with self.store.writer(previous=self._snapshot) as writer:
            row = writer.base.row_of.get(item_id)
            if row is None:
                raise UnknownItemError(f"no item {item_id!r} in the index")
            item = writer.base.items[row]
            writer.remove(item_id)
        self.reload(latest=writer.base)
        if item.source == "api":
            self._forget_image(item.path)
        return item

    def _forget_image(self, relative: str) -> None:
        """Delete an API image file that no item refers to any more."""
        items = self._snapshot.items
        same = items.many(items.rows_with_hash(Path(relative).stem))  # named by content hash
        if any(i is not None and i.source == "api" and i.path == relative for i in same):
            return
        with contextlib.suppress(FileNotFoundError):
            (self.store.directory / relative).unlink()

    @_reading_again_when_renumbered
    def info(self) -> IndexInfo:
        """Backbone, size and dates of the index (`size_bytes`: the disk space its files take,
        the tuned search space and uploaded images included; a matrix file's unwritten spare
        rows take none)."""
        snapshot, header = self._snapshot, self.store.header
        size = sum(_disk_bytes(p) for p in self.store.directory.rglob("*") if p.is_file())
        projection, point = self.projection, self.store.restore_point()
        tuned = None
        if projection is not None:
            tuned = {key: projection.info.get(key) for key in ("label_column", "trained_at")}
            tuned.update(dim=projection.dim, classifier=projection.classifier is not None)
        columns = [
            {"name": c.name, "kind": c.kind, "distinct": c.distinct, "filled": c.filled}
            for c in describe_columns(snapshot.items)
        ]
        counts = self.events.item_counts(max_age_s=0)
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
            tuned=tuned,
            columns=columns,
            shoppers=len(self.events.users()),
            events=sum(sum(kinds.values()) for kinds in counts.values()),
            restorable_generation=point.generation if point is not None else None,
            search=self._vector_index(snapshot).params,
        )

    # -- queries ---------------------------------------------------------------------------------

    def embed(self, image: ImageSource) -> np.ndarray:
        """The unit vector of an image (path, bytes or PIL image) in this index's space."""
        return np.array(self._query_vector(image, _content_hash(image)))  # the caller's own

    def _query_vector(self, image: ImageSource, digest: str | None) -> np.ndarray:
        """The (read-only) vector of a query image, from the last few queries when its content
        is the same (`recognize` then `recommend` on one upload run the model once)."""
        if digest is not None:
            with self._recent_lock:
                vector = self._recent.get(digest)
                if vector is not None:
                    self._recent.move_to_end(digest)
                    return vector
        vector = self.embedder.embed_one(image)
        self._remember(digest, vector)
        return vector

    def _remember(self, digest: str | None, vector: np.ndarray) -> None:
        vector.setflags(write=False)  # shared by the searches of the same upload
        if digest is None:  # a PIL image: no content hash to know it by
            return
        with self._recent_lock:
            self._recent[digest] = vector
            while len(self._recent) > RECENT_QUERIES:
                self._recent.popitem(last=False)

    @_reading_again_when_renumbered
    def recommend(
        self, image: ImageSource, k: int = 5, *, filters: Filters | None = None
    ) -> list[Recommendation]:
        """The `k` catalog items most similar to `image` that pass `filters`, best first.

        A catalog file byte-identical to the query is never returned.
        """
        _check_k(k)
        digest = _content_hash(image)
        vector = self._query_vector(image, digest)
        snapshot = self._snapshot
        exclude = snapshot.items.rows_with_hash(digest) if digest else []
        return self.search_vector(
            vector, k, exclude_rows=exclude, filters=filters, snapshot=snapshot
        )

    @_reading_again_when_renumbered
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
        exclude = [row, *snapshot.items.rows_with_hash(snapshot.items[row].hash)]
        return self.search_vector(
            vector, k, exclude_rows=exclude, filters=filters, snapshot=snapshot
        )

    @_reading_again_when_renumbered
    def browse(
        self, *, offset: int = 0, limit: int = 20, filters: Filters | None = None
    ) -> tuple[list[Item], int]:
        """A page of catalog items (in index order) that pass `filters`, and how many pass."""
        snapshot = self._snapshot
        rows = np.flatnonzero(self._allowed(snapshot, filters))
        page = rows[max(0, offset) : max(0, offset) + max(0, limit)]
        return [item for item in snapshot.items.many(page) if item is not None], len(rows)

    @_reading_again_when_renumbered
    def filter_columns(self) -> dict[str, list[str]]:
        """Metadata columns with few enough distinct values to filter on, and their values
        (computed once per committed generation: the web app asks on every rerun)."""
        snapshot = self._snapshot
        cached = self._columns
        if cached is None or cached[0] is not snapshot:
            cached = self._columns = (snapshot, column_values(snapshot.items))
        return cached[1]

    def _allowed(self, snapshot: Snapshot, filters: Filters | None) -> np.ndarray:
        """The rows of `snapshot` that pass `filters` (its columns read once per snapshot)."""
        cached = self._metadata_columns
        if cached is None or cached[0] is not snapshot:
            cached = (snapshot, MetadataColumns(snapshot.items.by_row()))
            if snapshot is self._snapshot:
                self._metadata_columns = cached
        return cached[1].mask(filters)

    @_reading_again_when_renumbered
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
        allowed = self._allowed(snapshot, filters) if filters else None
        excluded = np.asarray(exclude_rows, np.int64) if exclude_rows else None
        projection, _, index = self._space(snapshot)  # exact scores, whatever finds candidates
        if projection is not None:
            vector = projection.apply(vector)
        found, best = index.search(vector, k, allowed=allowed, excluded=excluded)
        return self._results(snapshot, found[0], best[0])

    def recognize(self, image: ImageSource) -> Recognition:
        """The garment category (top 3, calibrated) and the dominant colours of `image`.

        The index's own classifier (from `stylefinder tune`) answers when there is one, else
        the backbone's ImageNet head mapped to a garment taxonomy. The image is decoded and run
        through the model once, as indexing does, and its vector kept for a search that follows.

        Example:
            >>> engine.recognize("upload.jpg").to_dict()["category"]  # doctest: +SKIP
            'Dress'
        """
        digest = _content_hash(image)
        picture = self.embedder.decode(image)
        vectors, imagenet = self.embedder.embed_and_classify([picture])
        self._remember(digest, vectors[0])
        projection = self.projection
        if projection is not None and projection.classifier is not None:
            probabilities = projection.probabilities(vectors)
            categories = top_categories(probabilities, projection.classifier.labels)[0]
            source = "classifier"
        elif imagenet is not None:
            categories, source = predict_garments(imagenet)[0], "imagenet"
        else:
            raise ValueError(f"{self.embedder.spec.name} weights have no ImageNet head")
        return Recognition(categories, source, dominant_colours(picture))

    def same_category_filter(self, image: ImageSource) -> dict[str, list[str]]:
        """A filter keeping items of the category recognized in `image` (`category_pred`, or
        the label column the classifier was trained on); empty when the category is unknown."""
        return self.category_filter(self.recognize(image))

    def category_filter(self, recognition: Recognition) -> dict[str, list[str]]:
        """The filter keeping items of `recognition`'s category ({} when it is unknown)."""
        if recognition.category == UNKNOWN:
            return {}
        projection = self.projection
        column = CATEGORY_COLUMN
        if recognition.source == "classifier" and projection is not None:
            column = projection.info.get("label_column", CATEGORY_COLUMN)
        return {column: [recognition.category]}

    def _results(self, snapshot: Snapshot, rows, scores) -> list[Recommendation]:
        """Recommendations for found `rows` (-1: none) and their scores, items read at once."""
        rows, scores = np.asarray(rows), np.asarray(scores)
        found = rows >= 0
        items = snapshot.items.many(rows[found])
        return [
            self._result(item, float(score))
            for item, score in zip(items, scores[found], strict=True)
            if item is not None
        ]

    def _result(self, item: Item, score: float) -> Recommendation:
        return Recommendation(item.id, self.image_path(item), round(score, 6), dict(item.metadata))

    # -- shoppers --------------------------------------------------------------------------------
    # Personalized recommendations (issue 8): events live in this index's manifest
    # (stylefinder.shoppers.events), the ranking is stylefinder.recommend.personal.

    @property
    def events(self) -> EventStore:
        """The shoppers' users, events and tokens, kept in this index's manifest."""
        with self._lock:
            if self._event_store is None:
                self._event_store = SqliteEventStore(self.store.directory)
            return self._event_store

    def record_event(
        self,
        user_id: str,
        item_id: str,
        kind: str,
        *,
        timestamp: object = None,
        weight: object = None,
    ) -> Event:
        """Store that shopper `user_id` did `kind` (view, like, dislike, add_to_cart, purchase)
        to catalog item `item_id`; `timestamp` (ISO 8601 or epoch seconds) defaults to now.

        Example:
            >>> engine.record_event("u-1", "dress-12", "like")  # doctest: +SKIP
            Event(user_id='u-1', item_id='dress-12', kind='like', ...)
        """
        return self.events.add_event(
            user_id, item_id, kind, timestamp=timestamp, weight=weight, known_items=self._snapshot
        )

    def record_events(self, user_id: str, events: Iterable[Mapping[str, object]]) -> list[Event]:
        """Store several events of one shopper, all or none (see `EventStore.add_events`).

        Example:
            >>> engine.record_events("u-1", [{"item_id": "dress-12", "kind": "view"}])
            ... # doctest: +SKIP
        """
        return self.events.add_events(user_id, events, known_items=self._snapshot)

    def import_events(self, source: CsvSource) -> ImportSummary:
        """Import events from CSV (user_id,item_id,kind[,timestamp][,weight]); bad rows are
        rejected with their line number and the rest is stored.

        Example:
            >>> engine.import_events("events.csv").added  # doctest: +SKIP
            998
        """
        return self.events.import_csv(source, known_items=self._snapshot)

    @_reading_again_when_renumbered
    def recommend_for_user(
        self,
        user_id: str,
        k: int = 10,
        *,
        filters: Filters | None = None,
        diversity: float | None = None,
        settings: ProfileSettings | None = None,
        now: float | None = None,
    ) -> list[Recommendation]:
        """The `k` items to show shopper `user_id`, from their events: near what they liked,
        bought or carted (recent events count more), away from what they disliked, never what
        they bought or disliked, spread out by MMR (`diversity` in [0, 1]; None: 0.3, or 0.5 for
        the cold start). A shopper with no positive events gets popular, varied items.

        `score` is the ranking score: MMR's objective, (1 - diversity) x relevance - diversity x
        similarity to the closest item above it (the relevance itself with diversity 0); it
        never increases down the list and stays within [-1, 1].

        Example:
            >>> [r.id for r in engine.recommend_for_user("u-1", k=3)]  # doctest: +SKIP
            ['dress-40', 'dress-7', 'coat-3']
        """
        _check_k(k)
        if diversity is not None:
            check_diversity(diversity)
        settings = settings or ProfileSettings()
        snapshot = self._snapshot
        events = self.events.events(user_id)
        profile = build_profile(events, snapshot.row_of, settings=settings, now=now)
        popularity = None
        if profile.cold:
            counts = self.events.item_counts()
            size = snapshot.size
            popularity = popularity_vector(counts, snapshot.row_of, size, settings=settings)
        return self._personal(snapshot, profile, k, filters, diversity, settings, popularity)

    @_reading_again_when_renumbered
    def recommend_from_examples(
        self,
        positive: Sequence[str],
        negative: Sequence[str] = (),
        k: int = 10,
        *,
        filters: Filters | None = None,
        diversity: float | None = None,
        settings: ProfileSettings | None = None,
    ) -> list[Recommendation]:
        """More like the `positive` items, not like the `negative` ones (catalog ids); the
        examples themselves are not returned.

        Example:
            >>> engine.recommend_from_examples(["dress-12", "dress-40"], ["coat-3"], k=5)
            ... # doctest: +SKIP
        """
        _check_k(k)
        if diversity is not None:
            check_diversity(diversity)
        snapshot = self._snapshot
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = [negative] if isinstance(negative, str) else list(negative)
        if not positive:
            raise ValueError("give at least one positive example")
        rows = []
        for item_id in [*positive, *negative]:
            row = snapshot.row_of.get(item_id)
            if row is None:
                raise UnknownItemError(f"no item {item_id!r} in the index")
            rows.append(row)
        profile = Profile.from_examples(rows[: len(positive)], rows[len(positive) :])
        settings = settings or ProfileSettings()
        return self._personal(snapshot, profile, k, filters, diversity, settings, None)

    def _personal(
        self,
        snapshot: Snapshot,
        profile: Profile,
        k: int,
        filters: Filters | None,
        diversity: float | None,
        settings: ProfileSettings,
        popularity: np.ndarray | None,
    ) -> list[Recommendation]:
        _, matrix = self._search_space(snapshot)
        allowed = self._allowed(snapshot, filters) if filters else None  # empty rows fail too
        if allowed is None and len(snapshot) < snapshot.size:  # removed items' empty rows
            allowed = self._vector_index(snapshot).live_mask()
        rows, scores = rank(
            matrix,
            profile,
            k,
            allowed=allowed,
            popularity=popularity,
            diversity=diversity,
            settings=settings,
        )
        return self._results(snapshot, rows, scores)

    # -- end of shoppers -------------------------------------------------------------------------


API_IMAGES = "images"

RECENT_QUERIES = 32  # query vectors kept by content hash (a recognize and the search after it)
MAX_ID_LENGTH = 256  # the limits of items added through add_item (the API's schema uses them)
MAX_METADATA_FIELDS = 64
MAX_METADATA_VALUE = 2000  # characters of one metadata value
RESERVED_METADATA = frozenset({"id", "path"})
_EXTENSIONS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}


def _disk_bytes(path: Path) -> int:
    """The disk space `path` takes (its allocated blocks where the system reports them)."""
    stat = path.stat()
    blocks = getattr(stat, "st_blocks", None)
    return stat.st_size if blocks is None else blocks * 512


def _check_item_id(item_id: str) -> str:
    if not isinstance(item_id, str) or not item_id.strip():
        raise ValueError("item id must be a non-empty string")
    if len(item_id) > MAX_ID_LENGTH or any(ord(c) < 32 for c in item_id):
        raise ValueError(f"item id must be at most {MAX_ID_LENGTH} printable characters")
    return item_id.strip()


def _check_metadata(metadata: Mapping[str, object]) -> dict[str, str | int | float]:
    if not isinstance(metadata, Mapping):
        raise ValueError("metadata must be an object of names to values")
    if len(metadata) > MAX_METADATA_FIELDS:
        raise ValueError(f"metadata may have at most {MAX_METADATA_FIELDS} fields")
    clean = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or key in RESERVED_METADATA:
            raise ValueError(f"metadata field name {key!r} is not allowed")
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"metadata field {key!r} must be a string or a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"metadata field {key!r} must be a finite number")
        text = str(value)
        if len(text) > MAX_METADATA_VALUE:
            raise ValueError(f"metadata field {key!r} is longer than {MAX_METADATA_VALUE}")
        # numbers stay numbers (range filters compare them); booleans become text
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        clean[key] = value if number else text.lower() if isinstance(value, bool) else text
    return clean


def _extension(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        return _EXTENSIONS.get(image.format or "", ".img")


def _write_once(path: Path, data: bytes) -> None:
    """Write `data` to `path` unless the file is already there (names are content hashes)."""
    if not path.is_file():
        atomic_write(path, data)


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
