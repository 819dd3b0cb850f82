"""Request and response bodies of the HTTP API (pydantic), documented in its OpenAPI schema."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 100


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


class SearchResponse(BaseModel):
    results: list[SearchResult]


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
