"""Request and response bodies of the HTTP API (pydantic), documented in its OpenAPI schema."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 100
MAX_EVENTS_PER_REQUEST = 1000


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. bad_image")
    message: str = Field(description="what was wrong, for people")
    details: list[dict] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class SearchRequest(BaseModel):
    """JSON body of POST /v1/search."""

    model_config = ConfigDict(extra="forbid")
    image_base64: str = Field(description="the query image file, base64-encoded")
    k: int = Field(5, ge=1, le=MAX_K, description="number of results")
    filters: dict[str, str | list[str]] = Field(
        default_factory=dict, description='metadata filters, e.g. {"category": ["Dress"]}'
    )
    same_category: bool = Field(
        False, description="only items of the category recognized in the image"
    )


class RecognizeRequest(BaseModel):
    """JSON body of POST /v1/recognize."""

    model_config = ConfigDict(extra="forbid")
    image_base64: str = Field(description="the image file, base64-encoded")


class ItemRequest(BaseModel):
    """JSON body of POST /v1/items (multipart with the same fields is accepted too)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=256)
    image_base64: str = Field(description="the item's image file, base64-encoded")
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)


class SearchResult(BaseModel):
    id: str
    score: float = Field(description="cosine similarity, higher is more similar")
    metadata: dict[str, str]
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
    source: str = Field(description='"classifier" (the index\'s tuned classifier) or "imagenet"')
    colours: list[ColourOut] = Field(description="dominant colours, most common first")


class SearchResponse(BaseModel):
    results: list[SearchResult]
    recognition: RecognitionOut | None = Field(
        None, description="the recognized category and colours, with same_category only"
    )


class ItemOut(BaseModel):
    id: str
    metadata: dict[str, str]
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

    model_config = ConfigDict(extra="forbid")
    item_id: str = Field(description="a catalog item id")
    kind: str = Field(description="view, like, dislike, add_to_cart or purchase")
    timestamp: str | float | None = Field(
        None, description="ISO 8601 (UTC when no zone) or epoch seconds; default now"
    )
    weight: float | None = Field(None, description="a multiplier in (0, 100], default 1")


class EventBatch(BaseModel):
    """Several events of one shopper, stored all or none."""

    model_config = ConfigDict(extra="forbid")
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
