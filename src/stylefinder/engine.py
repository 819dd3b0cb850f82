"""The Python API: open an index once, then ask for items that look like a photo or an item.

A thin facade over an index directory or a PostgreSQL catalog (`index.stores`): one
generation's search, filters and results are a view (`recommend.views`), made anew when the
catalog moves on; personal ranking is `recommend.for_shoppers`; added items are
`index.item_writes`; categories are `recognize.categorizer`; shoppers' events are
`engine.events` (`shoppers.stores`). Results are products (`recommend.products`): a product
with several photos comes back once, and one out of stock is left out unless asked for.

Example:
    >>> engine = Engine.open("shop-index")  # doctest: +SKIP
    >>> [r.id for r in engine.recommend("upload.jpg", k=5)]  # doctest: +SKIP
    ['dress-12', 'dress-40', 'dress-7', 'dress-3', 'dress-91']
    >>> engine.similar("dress-12", k=3)[0].score  # doctest: +SKIP
    0.93
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stylefinder.catalog.images import DEFAULT_MAX_PIXELS, ImageSource, load_image
from stylefinder.catalog.uploads import check_item_id, check_metadata
from stylefinder.embed.base import Embedder
from stylefinder.embed.load import embedder_for_space, text_encoder_for_space
from stylefinder.embed.registry import embeds_text
from stylefinder.embed.text_encoder import TextEncoder
from stylefinder.index.item_writes import put_item, remove_item
from stylefinder.index.snapshot import Snapshot
from stylefinder.index.store import IndexStore

if TYPE_CHECKING:
    from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.index.stores import open_store
from stylefinder.recognize.categorizer import Categorizer, recognized
from stylefinder.recognize.recognition import Recognition
from stylefinder.recognize.zero_shot import SHOP_CATEGORY_COLUMN, ZeroShot
from stylefinder.recommend.filters import Filters
from stylefinder.recommend.for_shoppers import check_k, for_shopper, from_examples
from stylefinder.recommend.hybrid import (
    DEFAULT_TEXT_WEIGHT,
    check_text,
    hybrid_search,
    mixed_vector,
    searchable_words,
)
from stylefinder.recommend.personal import ProfileSettings
from stylefinder.recommend.products import product_of, products
from stylefinder.recommend.projection import Projection
from stylefinder.recommend.recent import RecentQueries, content_hash
from stylefinder.recommend.summary import IndexInfo, index_info
from stylefinder.recommend.view import CatalogView, Recommendation
from stylefinder.recommend.view import reading_again_when_renumbered as reading_again
from stylefinder.recommend.views import open_view
from stylefinder.shoppers.base import CsvSource, Event, EventStore, ImportSummary
from stylefinder.shoppers.stores import shoppers_of
from stylefinder.types import EmbeddingSpace, Item

__all__ = ["Engine", "IndexInfo", "Recommendation"]


class Engine:
    """Recommendations from one index. The model loads on first use of an image query.

    Thread-safe for queries; `reload()` picks up commits made by other writers.
    """

    def __init__(
        self,
        store: IndexStore | PgCatalog,
        *,
        runtime: str = "onnx",
        weights: str | None = None,
        embedder: Embedder | None = None,
        events: EventStore | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.store, self.runtime, self.weights = store, runtime, weights
        self.max_pixels, self._embedder = max_pixels, embedder
        self._text_encoder: TextEncoder | None = None
        self._zero_shot: tuple[tuple[str, ...], ZeroShot] | None = None
        self._lock = threading.Lock()
        self._view = open_view(store)
        self._recent = RecentQueries()
        self._event_store = events  # default: the index's own shoppers file, opened on use

    @classmethod
    def open(cls, location: str | Path, **options) -> Engine:
        """Open the index at `location` (a directory, or a `postgresql://` URL) for queries;
        `options` as `Engine`'s (runtime, weights, max_pixels)."""
        return cls(open_store(location), **options)

    # -- state -----------------------------------------------------------------------------------

    @property
    def view(self) -> CatalogView:
        """The generation queries read now, with its derived state."""
        return self._view

    @property
    def snapshot(self) -> Snapshot:
        return self._view.snapshot

    def __len__(self) -> int:
        return len(self._view)

    def reload(self, *, latest: Snapshot | None = None) -> bool:
        """Re-read the index if another writer committed (`latest`: what this engine just
        committed, not read again); True when it changed."""
        if self.store.generation() == self._view.generation:
            return False
        view = open_view(self.store, previous=self._view, latest=latest)
        with self._lock:
            self._view = view
        return True

    @property
    def projection(self) -> Projection | None:
        """The projection learned by `stylefinder tune`, if the index has one."""
        return self._view.projection

    @property
    def embedder(self) -> Embedder:
        """The index's backbone, loaded on first use (`embed.load.embedder_for_space`)."""
        with self._lock:
            if self._embedder is None:
                space = self.store.header.space
                options = {"runtime": self.runtime, "weights": self.weights}
                embedder = embedder_for_space(space, max_pixels=self.max_pixels, **options)
                self.store.check_space(embedder.space)
                self._embedder = embedder
            return self._embedder

    @property
    def embeds_text(self) -> bool:
        """Whether the index's backbone embeds text into its images' space (CLIP-family)."""
        return embeds_text(self.store.header.backbone)

    @property
    def text_encoder(self) -> TextEncoder:
        """The text tower of a CLIP-family index's backbone, loaded on first use."""
        with self._lock:
            if self._text_encoder is None:
                space = self.store.header.space
                self._text_encoder = text_encoder_for_space(space, weights=self.weights)
            return self._text_encoder

    def _categorizer(self) -> Categorizer:
        projection = self._view.projection
        zero_shot = None
        if self.embeds_text and (projection is None or projection.classifier is None):
            zero_shot = self.zero_shot()
        return Categorizer(projection, backbone=self.store.header.backbone, zero_shot=zero_shot)

    def zero_shot(self) -> ZeroShot:
        """A CLIP-family index's zero-shot categories: prompts of the shop's `category` names
        (from its metadata) or of the garment taxonomy, embedded once per set of names."""
        names = tuple(self._view.filter_columns.get(SHOP_CATEGORY_COLUMN, ()))
        known = self._zero_shot
        if known is None or known[0] != names:
            encoder = self.text_encoder
            known = (names, ZeroShot.from_names(encoder.encode, encoder.logit_scale, names))
            self._zero_shot = known
        return known[1]

    @reading_again
    def item(self, item_id: str) -> Item:
        """The catalog item `item_id`, or `UnknownItemError`."""
        return self._view.item(item_id)

    def image_path(self, item: Item) -> str:
        """Where the item's image file is (absolute when its folder is known)."""
        return self._view.image_path(item)

    @reading_again
    def info(self) -> IndexInfo:
        """Backbone, size, dates, columns, search settings and shoppers of the index."""
        counts = self.events.item_counts(max_age_s=0)
        total = sum(sum(kinds.values()) for kinds in counts.values())
        shoppers, view = len(self.events.users()), self._view
        if isinstance(view, CatalogView):
            return index_info(view, shoppers=shoppers, events=total)
        return view.info(shoppers=shoppers, events=total)  # a PostgreSQL catalog's

    # -- writes ----------------------------------------------------------------------------------

    def add_item(
        self, item_id: str, image: bytes, metadata: Mapping[str, object] | None = None
    ) -> tuple[Item, bool]:
        """Add or replace item `item_id` with an image (file bytes) and metadata, committed
        atomically; colours (and category, on a tuned index) are named as indexing does, values
        given kept. Returns (item, created). Example: `engine.add_item("sku-1", data, {})`."""
        item_id, clean, image = check_item_id(item_id), check_metadata(metadata or {}), bytes(image)
        decoded = load_image(image, max_pixels=self.embedder.max_pixels)
        vector = self.embedder.embed_one(decoded)
        clean = {**self._categorizer().new_item_metadata(decoded, vector), **clean}
        base = self._view.snapshot if isinstance(self._view, CatalogView) else None
        item, old, latest = put_item(self.store, base, item_id, image, vector, clean)
        self.reload(latest=latest)
        return item, old is None

    def remove_item(self, item_id: str) -> Item:
        """Remove item `item_id` (committed atomically); returns what was removed."""
        base = self._view.snapshot if isinstance(self._view, CatalogView) else None
        item, latest = remove_item(self.store, base, item_id)
        self.reload(latest=latest)
        return item

    # -- queries ---------------------------------------------------------------------------------

    def embed(self, image: ImageSource) -> np.ndarray:
        """The unit vector of an image (path, bytes or PIL image) in this index's space."""
        return np.array(self._query_vector(image, content_hash(image)))  # the caller's own

    def _query_vector(self, image: ImageSource, digest: str | None) -> np.ndarray:
        """The (read-only) vector of a query image, kept for a while by content."""
        vector = self._recent.get(digest)
        if vector is None:
            vector = self.embedder.embed_one(image)
            self._recent.remember(digest, vector)
        return vector

    @reading_again
    def recommend(
        self, image: ImageSource, k: int = 5, *, filters: Filters | None = None
    ) -> list[Recommendation]:
        """The `k` catalog items most similar to `image` that pass `filters`, best first.
        A catalog file byte-identical to the query is never returned."""
        check_k(k)
        digest = content_hash(image)
        vector = self._query_vector(image, digest)
        view = self._view

        def fetch(n: int) -> list[Recommendation]:
            return view.nearest(vector, n, exclude_hash=digest, filters=filters)

        return products(fetch, k, filters=filters)

    @reading_again
    def search(
        self,
        text: str | None = None,
        image: ImageSource | None = None,
        k: int = 10,
        *,
        filters: Filters | None = None,
        text_weight: float = DEFAULT_TEXT_WEIGHT,
        expand: bool = True,
        item_id: str | None = None,
    ) -> list[Recommendation]:
        """The `k` items that best match words `text`, a photo `image` (or catalog item
        `item_id`'s look), or both (fused ranks, `text_weight` the words' share;
        `recommend.hybrid`). Words alone need no model; on a CLIP-family index the words'
        meaning is embedded too and searched among the images (mixed into the photo's vector,
        `text_weight` its share). Example:
        `engine.search("navy linen shirt", k=10)`, `engine.search("red", photo)`."""
        check_k(k)
        if image is not None and item_id is not None:
            raise ValueError("give an image or an item id, not both")
        view, vector, exclude, skip = self._view, None, [], []
        if image is not None:
            digest = content_hash(image)
            vector = self._query_vector(image, digest)
            exclude = view.keys_with_hash(digest)
        elif item_id is not None:
            item, key = view.item(item_id), view.key_of(item_id)
            vector = view.vectors_of([key])[0]
            exclude = [key, *view.keys_with_hash(item.hash)]
            skip = [product_of(item.id, item.metadata)]  # its other photos too
        if text is not None and self.embeds_text:  # what the words mean, among the images
            meaning = self.text_encoder.encode_one(check_text(text))
            vector = meaning if vector is None else mixed_vector(vector, meaning, text_weight)
            text = searchable_words(text)  # None when no word is left to match in the metadata
        options = {"filters": filters, "text_weight": text_weight, "expand": expand}

        def fetch(n: int) -> list[Recommendation]:
            return hybrid_search(view, text=text, vector=vector, k=n, exclude=exclude, **options)

        return products(fetch, k, filters=filters, skip=skip)

    @reading_again
    def similar(
        self, item_id: str, k: int = 5, *, filters: Filters | None = None
    ) -> list[Recommendation]:
        """More like this: the `k` items most similar to catalog item `item_id`, without it."""
        check_k(k)
        view = self._view
        item = view.item(item_id)
        return products(
            lambda n: view.similar(item_id, n, filters=filters),
            k,
            filters=filters,
            skip=[product_of(item.id, item.metadata)],  # its other photos too
        )

    @reading_again
    def browse(
        self, *, offset: int = 0, limit: int = 20, filters: Filters | None = None
    ) -> tuple[list[Item], int]:
        """A page of items (in index order) that pass `filters`, and how many pass."""
        return self._view.browse(offset=offset, limit=limit, filters=filters)

    @reading_again
    def filter_columns(self) -> dict[str, list[str]]:
        """Metadata columns with few enough distinct values to filter on, and their values."""
        return self._view.filter_columns

    @reading_again
    def search_vector(
        self,
        vector: np.ndarray,
        k: int = 5,
        *,
        space: EmbeddingSpace | None = None,
        exclude_ids: Sequence[str] = (),
        filters: Filters | None = None,
    ) -> list[Recommendation]:
        """Nearest items to a unit vector that pass `filters`, without `exclude_ids`; `space`
        must match the index's."""
        if space is not None:
            self.store.check_space(space)
        view = self._view

        def fetch(n: int) -> list[Recommendation]:
            return view.nearest(vector, n, exclude_ids=exclude_ids, filters=filters)

        return products(fetch, k, filters=filters)

    def recognize(self, image: ImageSource) -> Recognition:
        """The garment category (top 3, calibrated: the index's classifier, else the ImageNet
        head mapped to a taxonomy) and dominant colours of `image`; the vector is kept for a
        search that follows. Example: `engine.recognize("upload.jpg").category`."""
        digest = content_hash(image)
        picture = self.embedder.decode(image)
        vectors, imagenet = self.embedder.embed_and_classify([picture])
        self._recent.remember(digest, vectors[0])
        return recognized(self._categorizer(), picture, vectors[0], imagenet)

    def category_filter(self, recognition: Recognition) -> dict[str, list[str]]:
        """A filter keeping items of `recognition`'s category (`category_pred`, or the label
        column the classifier was trained on); {} when the category is unknown."""
        return self._categorizer().filter_for(recognition)

    # -- shoppers --------------------------------------------------------------------------------

    @property
    def events(self) -> EventStore:
        """The shoppers' users, events and tokens (the index's shoppers file, or the
        PostgreSQL catalog's schema)."""
        with self._lock:
            if self._event_store is None:
                self._event_store = shoppers_of(self.store)
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
        to catalog item `item_id` at `timestamp` (ISO 8601 or epoch seconds; default now).
        Example: `engine.record_event("u-1", "dress-12", "like")`."""
        return self.events.add_event(
            user_id,
            item_id,
            kind,
            timestamp=timestamp,
            weight=weight,
            known_items=self._view.known_items,
        )

    def record_events(self, user_id: str, events: Iterable[Mapping[str, object]]) -> list[Event]:
        """Store several events of one shopper, all or none (`EventStore.add_events`)."""
        return self.events.add_events(user_id, events, known_items=self._view.known_items)

    def import_events(self, source: CsvSource) -> ImportSummary:
        """Import events from CSV (user_id,item_id,kind[,timestamp][,weight]), rejecting bad
        rows with their line numbers (`EventStore.import_csv`)."""
        return self.events.import_csv(source, known_items=self._view.known_items)

    @reading_again
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
        """The `k` items to show shopper `user_id`, from their events (ranking and scores:
        `recommend.for_shoppers.for_shopper`). Example: `engine.recommend_for_user("u-1")`."""
        options = {"filters": filters, "diversity": diversity, "settings": settings, "now": now}
        return for_shopper(self._view, self.events, user_id, k, **options)

    @reading_again
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
        """More like the `positive` items, not like the `negative` ones (catalog ids), without
        the examples. Example: `engine.recommend_from_examples(["dress-12"], ["coat-3"])`."""
        options = {"filters": filters, "diversity": diversity, "settings": settings}
        return from_examples(self._view, positive, negative, k, **options)
