"""Pieces shared by the API's routers: the error type, key headers and request parsing helpers."""

from __future__ import annotations

import secrets
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, ValidationError

from stylefinder.recommend.engine import Recommendation
from stylefinder.recommend.filters import parse_filters
from stylefinder.serve.schemas import ErrorResponse


class ApiError(Exception):
    """An error answered as JSON: {"error": {"code", "message"}} with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, details: list | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


#: Documented error answers, for the `responses` of routes.
ERRORS = {
    400: {"model": ErrorResponse, "description": "malformed request"},
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    403: {"model": ErrorResponse, "description": "not allowed with these credentials"},
    404: {"model": ErrorResponse, "description": "no such item or user"},
    409: {"model": ErrorResponse, "description": "the index lacks what the request needs"},
    413: {"model": ErrorResponse, "description": "upload or image too large"},
    415: {"model": ErrorResponse, "description": "unsupported content type"},
    422: {"model": ErrorResponse, "description": "invalid parameters or not a usable image"},
}
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")
bearer = HTTPBearer(auto_error=False, description="API key (or a shopper's token) as bearer")
user_token_header = APIKeyHeader(
    name="X-User-Token", auto_error=False, description="a shopper's own access token"
)


def matches(key: str | None, *allowed: str | None) -> bool:
    """True when `key` equals one of the configured keys (constant-time; None never matches)."""
    if not key:
        return False
    given = key.encode()
    return any(a and secrets.compare_digest(given, a.encode()) for a in allowed)


def parse_body(model: type[BaseModel], raw: bytes | str) -> BaseModel:
    """A JSON body validated by `model`, or a 422 `invalid_request` listing what was wrong."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", "the JSON body is not valid", details(exc)) from None


def details(exc: ValidationError | RequestValidationError) -> list[dict]:
    """Pydantic's errors as [{"loc", "msg"}]."""
    return [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", ""))}
        for error in exc.errors()
    ]


def query_filters(texts: list[str]) -> dict[str, list[str]]:
    """Filters from repeated `filter=COLUMN:VALUE` query parameters, or 422 `invalid_filter`."""
    try:
        return parse_filters(texts, ":")
    except ValueError as exc:
        raise ApiError(422, "invalid_filter", str(exc)) from None


def result_out(result: Recommendation, request: Request) -> dict:
    """One search or recommendation result as answered (`SearchResult`)."""
    return {
        "id": result.id,
        "score": result.score,
        "metadata": result.metadata,
        "image_url": image_url(result.id, request),
    }


def image_url(item_id: str, request: Request) -> str:
    """The path of an item's image route."""
    return f"{request.url_for('item_image', item_id=quote(item_id, safe='/')).path}"
