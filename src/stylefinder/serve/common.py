"""Pieces shared by the API's routers: the error type, key headers and request parsing helpers."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator, Mapping
from urllib.parse import quote

import pydantic_core
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, ValidationError

from stylefinder.engine import Recommendation
from stylefinder.errors import BadFilterError
from stylefinder.recommend.display import display_fields, read_display
from stylefinder.recommend.filters import parse_filters
from stylefinder.serve.schemas import MAX_JSON_DEPTH, MAX_JSON_FIELD_BYTES, ErrorResponse


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
#: Documented answers of the routes that take an image.
IMAGE_ERRORS = {code: ERRORS[code] for code in (400, 401, 413, 415, 422)}
#: Documented answers of the routes that read an item.
ITEM_ERRORS = {code: ERRORS[code] for code in (401, 404, 422)}
api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="ApiKey", description="API key"
)
bearer = HTTPBearer(auto_error=False, description="API key (or a shopper's token) as bearer")
user_token_header = APIKeyHeader(
    name="X-User-Token",
    auto_error=False,
    scheme_name="UserToken",
    description="a shopper's own access token",
)


def matches(key: str | None, *allowed: str | None) -> bool:
    """True when `key` equals one of the configured keys (constant-time; None never matches)."""
    if not key:
        return False
    given = key.encode()
    return any(a and secrets.compare_digest(given, a.encode()) for a in allowed)


def parse_body(model: type[BaseModel], raw: bytes | str, *, max_bytes: int | None = None):
    """A JSON body validated by `model` (strictly: `true` is not an integer), or a 422:
    `invalid_request` listing what was wrong, `json_too_deep` or `json_too_large`."""
    load_json(raw, "body", max_bytes=max_bytes)  # depth and size, before any model sees it
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", "the JSON body is not valid", details(exc)) from None


def load_json(raw: bytes | str, name: str, *, max_bytes: int | None = MAX_JSON_FIELD_BYTES):
    """The value of a JSON text a client sent as `name`, at most `max_bytes` long and nested at
    most `MAX_JSON_DEPTH` levels, or a 422: `json_too_large`, `json_too_deep`, or
    `invalid_{name}` when it is not JSON (`invalid_request` for a body).

    Example:
        >>> load_json('{"category": ["Dress"]}', "filters")
        {'category': ['Dress']}
    """
    if max_bytes is not None and len(raw) > max_bytes:
        raise ApiError(
            422,
            "json_too_large",
            f"{name} is {len(raw):,} bytes of JSON; at most {max_bytes:,} are accepted",
            [{"loc": [name], "msg": "too large"}],
        )
    code = "invalid_request" if name == "body" else f"invalid_{name}"
    try:
        value = pydantic_core.from_json(raw)  # a recursion limit, unlike json.loads
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise _too_deep(name) from None
        raise ApiError(422, code, f"{name} is not valid JSON ({exc})") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise _too_deep(name)
    return value


def _too_deep(name: str) -> ApiError:
    return ApiError(
        422,
        "json_too_deep",
        f"{name} nests objects and arrays more than {MAX_JSON_DEPTH} levels deep; send flatter "
        "JSON",
        [{"loc": [name], "msg": "too deeply nested"}],
    )


def json_depth(value: object, *, stop: int = MAX_JSON_DEPTH) -> int:
    """How many levels of objects and arrays `value` nests (0 for a scalar), counted level by
    level without recursion, up to `stop` + 1.

    Example:
        >>> json_depth({"a": [1, {"b": []}]}), json_depth("text")
        (4, 0)
    """
    depth, level = 0, [value]
    while depth <= stop:
        containers = [node for node in level if isinstance(node, dict | list)]
        if not containers:
            return depth
        depth += 1
        level = [
            child
            for node in containers
            for child in (node.values() if isinstance(node, dict) else node)
        ]
    return depth


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
    except BadFilterError as exc:
        raise ApiError(422, "invalid_filter", str(exc)) from None


@contextlib.contextmanager
def filter_errors(code: str) -> Iterator[None]:
    """Answer a filter the engine cannot apply (`BadFilterError`: a range on a text column, an
    unreadable bound) as a 422 with `code`, the name of the field that carried it."""
    try:
        yield
    except BadFilterError as exc:
        raise ApiError(422, code, str(exc)) from None


def present_metadata(metadata: dict) -> dict:
    """Metadata as answered: text, numbers and booleans as stored; anything else (a list or an
    object in a hand-edited index) as its JSON text."""
    return {
        name: value
        if value is None or isinstance(value, str | int | float)
        else json.dumps(value, sort_keys=True, default=str)
        for name, value in metadata.items()
    }


def result_out(result: Recommendation, request: Request) -> dict:
    """One search or recommendation result as answered (`SearchResult`)."""
    return {
        "id": result.id,
        "score": result.score,
        "metadata": present_metadata(result.metadata),
        "display": display_out(result.metadata, request),
        "image_url": image_url(result.id, request),
    }


def display_out(metadata: Mapping[str, object], request: Request) -> dict:
    """What the web app shows of an item (title, price, link, details), from the index's
    display settings (`stylefinder config set`), as `Display`."""
    engine = getattr(request.app.state, "engine", None)
    state = engine.view.state if engine is not None else {}
    return display_fields(metadata, read_display(state))


def image_url(item_id: str, request: Request) -> str:
    """The path of an item's image route."""
    return f"{request.url_for('item_image', item_id=quote(item_id, safe='/')).path}"
