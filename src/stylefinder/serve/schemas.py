"""Request and response bodies of the HTTP API (pydantic), documented in its OpenAPI schema.

Request bodies are validated strictly: `k: true` or `k: 5.0` is not an integer, `"yes"` is not
a boolean. Every JSON a client sends (bodies, and the `filters` and `metadata` fields of
multipart forms) is nested at most `MAX_JSON_DEPTH` levels deep.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from stylefinder.catalog.uploads import (  # one source for the limits of added items
    MAX_ID_LENGTH,
    MAX_METADATA_FIELDS,
    MAX_METADATA_VALUE,
    RESERVED_METADATA,
)

MAX_K = 100
MAX_EVENTS_PER_REQUEST = 1000
MAX_LIMIT = 500  # items per page of GET /v1/items
MAX_JSON_DEPTH = 8  # nesting levels of objects and arrays in any JSON a client sends
MAX_JSON_FIELD_BYTES = 256_000  # a JSON text in a multipart field (`filters`, `metadata`)
MAX_JSON_BODY_BYTES = 2_000_000  # a JSON body without an image (events)
#: A red 8 x 8 PNG, the example image of the schema.
EXAMPLE_IMAGE = (
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFElEQVR4nGM8ISfHgA0wYRUdtBIA0MoBFD5jqJkA"
    "AAAASUVORK5CYII="
)

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
SafeInt = Annotated[StrictInt, Field(ge=-(2**53), le=2**53)]  # exact in every JSON reader
ItemId = Annotated[
    StrictStr,
    Field(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=r"^[^\x00-\x1f]*[^\x00-\x1f\s][^\x00-\x1f]*$",
        description="printable characters, not only spaces (surrounding spaces are dropped)",
    ),
]
FilterValue = StrictStr | SafeInt | FiniteFloat
Filters = dict[StrictStr, FilterValue | list[FilterValue]]
MetadataValue = Annotated[StrictStr, Field(max_length=MAX_METADATA_VALUE)] | SafeInt | FiniteFloat


def _no_reserved_names(metadata: dict[str, object]) -> dict[str, object]:
    bad = sorted(name for name in metadata if name in RESERVED_METADATA or not name.strip())
    if bad:
        raise ValueError(
            f"metadata field name(s) {', '.join(map(repr, bad))} not allowed: id and path are "
            "reserved, and a name may not be empty"
        )
    return metadata


Metadata = Annotated[
    dict[StrictStr, MetadataValue | bool],
    Field(
        max_length=MAX_METADATA_FIELDS,
        description=(
            f"flat object of up to {MAX_METADATA_FIELDS} fields: text (at most "
            f"{MAX_METADATA_VALUE} characters), finite numbers (kept as numbers, for range "
            "filters) or booleans (kept as the text true/false); no null, objects or arrays; "
            "the names id and path are reserved"
        ),
    ),
    AfterValidator(_no_reserved_names),
]
#: Metadata as answered: text or numbers, as stored.
MetadataOut = dict[str, str | int | float | bool | None]


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. bad_image")
    message: str = Field(description="what was wrong, for people")
    details: list[dict] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class SearchRequest(BaseModel):
    """JSON body of POST /v1/search."""

    model_config = ConfigDict(extra="forbid", strict=True)
    image_base64: str | None = Field(
        None,
        description="the query image file, base64-encoded (an image, `text`, or both)",
        examples=[EXAMPLE_IMAGE],
    )
    text: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="words to search for in the items' metadata (titles, categories, "
        'colours, ...), alone or with the image: "navy linen shirt", or with a photo "red"',
        examples=["navy linen shirt"],
    )
    text_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="with an image and text: the words' share of the ranking"
    )
    expand: bool = Field(
        True, description="text alone: also items that look like the best text matches"
    )
    k: int = Field(5, ge=1, le=MAX_K, description="number of results")
    filters: Filters = Field(
        default_factory=dict,
        description="metadata filters: column to a value or a list of values (any of), e.g. "
        '{"category": ["Dress", "Coat"], "price": "20..80"}; a value is text, a number or a '
        "range on a number column (<50, <=50, >20, >=20, 20..80)",
    )
    same_category: bool = Field(
        False, description="only items of the category recognized in the image"
    )


class RecognizeRequest(BaseModel):
    """JSON body of POST /v1/recognize."""

    model_config = ConfigDict(extra="forbid", strict=True)
    image_base64: str = Field(
        description="the image file, base64-encoded", examples=[EXAMPLE_IMAGE]
    )


class ItemRequest(BaseModel):
    """JSON body of POST /v1/items (multipart with the same fields is accepted too)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    id: ItemId = Field(examples=["sku-1"])
    image_base64: str = Field(
        description="the item's image file, base64-encoded", examples=[EXAMPLE_IMAGE]
    )
    metadata: Metadata = Field(
        default_factory=dict, examples=[{"category": "Dress", "price": 49, "colour": "red"}]
    )


class Display(BaseModel):
    """What to show of an item, from the index's display settings (`stylefinder config set`):
    the title, price and link columns' values (null when unset or empty; a link only when it
    is an http(s) URL) and the other visible columns as text."""

    title: str | None = None
    price: str | None = None
    link: str | None = None
    details: dict[str, str]


class SearchResult(BaseModel):
    id: str
    score: float = Field(
        description="cosine similarity, higher is more similar (for a shopper's feed: the "
        "ranking score, never increasing down the list, in [-1, 1])"
    )
    metadata: MetadataOut
    display: Display
    image_url: str


class CategoryOut(BaseModel):
    label: str
    probability: float = Field(description="calibrated probability")


class ColourOut(BaseModel):
    name: str = Field(description="palette name, e.g. navy")
    share: float = Field(description="share of the garment's pixels")
    rgb: list[int] = Field(description="mean colour of those pixels")


class RecognitionOut(BaseModel):
    """What garment an image shows and in which colours."""

    category: str = Field(description='the most probable category, or "unknown"')
    categories: list[CategoryOut] = Field(description="the top categories, most probable first")
    source: str = Field(
        description='"classifier" (the index\'s tuned classifier), "zero-shot" (a CLIP-family '
        'backbone\'s category prompts) or "imagenet"'
    )
    colours: list[ColourOut] = Field(description="dominant colours, most common first")


class SearchResponse(BaseModel):
    results: list[SearchResult]
    recognition: RecognitionOut | None = Field(
        None, description="the recognized category and colours, with same_category only"
    )


class ItemOut(BaseModel):
    id: str
    metadata: MetadataOut
    display: Display
    hash: str = Field(description="SHA-256 of the image file")
    source: str = Field(description='"catalog" (indexed from a folder) or "api"')
    added_at: str
    updated_at: str
    image_url: str


class ItemResponse(BaseModel):
    item: ItemOut
    created: bool | None = None


class ItemList(BaseModel):
    items: list[ItemOut]
    total: int
    offset: int
    limit: int


class Health(BaseModel):
    status: str
    items: int | None = None
    backbone: str | None = None


# -- shoppers (issue 8) ----------------------------------------------------------------------------


class EventIn(BaseModel):
    """One thing a shopper did to a catalog item."""

    model_config = ConfigDict(extra="forbid", strict=True)
    item_id: str = Field(description="a catalog item id")
    kind: str = Field(description="view, like, dislike, add_to_cart or purchase")
    timestamp: str | float | None = Field(
        None, description="ISO 8601 (UTC when no zone) or epoch seconds; default now"
    )
    weight: float | None = Field(None, description="a multiplier in (0, 100], default 1")


class EventBatch(BaseModel):
    """Several events of one shopper, stored all or none."""

    model_config = ConfigDict(extra="forbid", strict=True)
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class EventOut(BaseModel):
    id: int | None
    user_id: str
    item_id: str
    kind: str
    timestamp: str = Field(description="ISO 8601, UTC")
    weight: float


class EventsResponse(BaseModel):
    user_id: str
    events: list[EventOut]


class TokenResponse(BaseModel):
    user_id: str
    token: str = Field(description="send as X-User-Token (or Bearer); shown only once")


class UserRecommendations(BaseModel):
    user_id: str
    results: list[SearchResult]


class UserRecord(BaseModel):
    id: str
    created_at: str
    has_token: bool
    token_created_at: str | None


class UserExport(BaseModel):
    """Everything stored about a shopper (the token itself is never stored)."""

    user: UserRecord
    events: list[EventOut]
    exported_at: str


class UserDeleted(BaseModel):
    user_id: str
    deleted: dict[str, int] = Field(description='rows erased: {"users": 1, "events": n}')


class RejectedRow(BaseModel):
    line: int
    reason: str


class ImportSummaryOut(BaseModel):
    added: int
    rejected: list[RejectedRow] = Field(description="the first 1,000 rejected rows")
    rejected_total: int


# -- product feeds (issue 22) ----------------------------------------------------------------------

MAX_FEED_LISTED = 1000  # failed URLs, removed ids and feed problems listed by POST /v1/feeds/sync


class FeedSyncRequest(BaseModel):
    """JSON body of POST /v1/feeds/sync (optional: an empty body takes the defaults)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    confirm_removals: bool = Field(
        False,
        description="go ahead when the sync would remove more of the catalog than the removal "
        "guard allows (a feed cut short removes most products); without it such a sync "
        "answers 409 removals_need_confirmation and changes nothing",
    )


class FeedFailureOut(BaseModel):
    url: str
    reason: str = Field(description="http 404, timeout, not an image, too large, ...")
    detail: str


class FeedIndexOut(BaseModel):
    """What indexing the feed's photos did."""

    total: int = Field(description="items in the index after the sync")
    embedded: int
    changed: int
    reused: int
    updated_metadata: int
    unchanged: int
    removed: int
    skipped: int = Field(description="photos that could not be read")
    seconds: float


class FeedSyncResponse(BaseModel):
    """What a feed sync did, counted per image URL, and what indexing its photos did."""

    feed: str
    format: str = Field(description="shopify, google, woocommerce, csv or json")
    products: int
    images: int = Field(description="product photos the feed lists")
    downloaded: int = Field(description="new or changed photos downloaded")
    not_modified: int = Field(description="photos the shop answered 304 Not Modified for")
    unchanged: int = Field(description="photos downloaded again with the same content")
    kept: int = Field(description="photos that failed this time and keep their copy from before")
    failed: dict[str, int] = Field(description="failed URLs by reason (retried next sync)")
    failed_total: int
    failures: list[FeedFailureOut] = Field(
        description=f"the first {MAX_FEED_LISTED:,} failed URLs, by reason"
    )
    retried: int = Field(description="URLs that had failed on the sync before")
    recovered: int = Field(description="of those, the ones that came this time")
    removed: int = Field(description="items removed: products gone from the feed, photos gone")
    removed_ids: list[str] = Field(description=f"the first {MAX_FEED_LISTED:,} removed items")
    problems: list[str] = Field(description=f"the first {MAX_FEED_LISTED:,} feed rows not read")
    index: FeedIndexOut
    seconds: float
