"""The HTTP API: a FastAPI app factory over one index, loaded once in the lifespan.

Example:
    >>> settings = ServerSettings(index_dir="shop-index", admin_key="s3cret")
    >>> app = create_app(settings)  # doctest: +SKIP
    >>> # uvicorn.run(app) or fastapi.testclient.TestClient(app)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import mimetypes
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from stylefinder import __version__
from stylefinder.catalog.images import DEFAULT_MAX_PIXELS
from stylefinder.errors import (
    BadImageError,
    ImageTooLargeError,
    IndexStateError,
    StylefinderError,
    UnknownItemError,
)
from stylefinder.recommend.engine import Engine, Recommendation
from stylefinder.recommend.filters import parse_filters
from stylefinder.serve.limits import BodySizeLimit, Metrics, RequestTimeout
from stylefinder.serve.schemas import (
    MAX_K,
    ErrorResponse,
    Health,
    ItemList,
    ItemOut,
    ItemRequest,
    ItemResponse,
    SearchRequest,
    SearchResponse,
)
from stylefinder.types import Item

log = logging.getLogger(__name__)


@dataclass
class ServerSettings:
    """Everything the API needs to start. Keys come from the environment or from files."""

    index_dir: str
    admin_key: str | None = None
    read_key: str | None = None
    max_upload_bytes: int = 10_000_000
    max_pixels: int = DEFAULT_MAX_PIXELS
    request_timeout: float = 30.0

    @classmethod
    def from_env(cls, **overrides) -> ServerSettings:
        """Settings from STYLEFINDER_* variables; `*_KEY_FILE` variables name files holding keys.

        STYLEFINDER_INDEX, STYLEFINDER_ADMIN_KEY(_FILE), STYLEFINDER_READ_KEY(_FILE),
        STYLEFINDER_MAX_UPLOAD_MB, STYLEFINDER_MAX_PIXELS, STYLEFINDER_REQUEST_TIMEOUT.
        """
        env = os.environ
        values = {
            "index_dir": env.get("STYLEFINDER_INDEX", ""),
            "admin_key": _key(env, "STYLEFINDER_ADMIN_KEY"),
            "read_key": _key(env, "STYLEFINDER_READ_KEY"),
            "max_upload_bytes": int(float(env.get("STYLEFINDER_MAX_UPLOAD_MB", "10")) * 1e6),
            "max_pixels": int(env.get("STYLEFINDER_MAX_PIXELS", DEFAULT_MAX_PIXELS)),
            "request_timeout": float(env.get("STYLEFINDER_REQUEST_TIMEOUT", "30")),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values["index_dir"]:
            raise IndexStateError("no index given: set STYLEFINDER_INDEX or pass --index")
        return cls(**values)


def _key(env: os._Environ, name: str) -> str | None:
    if env.get(f"{name}_FILE"):
        text = Path(env[f"{name}_FILE"]).read_text(encoding="utf-8").strip()
        if not text:
            raise ValueError(f"{env[f'{name}_FILE']} is empty")
        return text
    return env.get(name) or None


class ApiError(Exception):
    """An error answered as JSON: {"error": {"code", "message"}} with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, details: list | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


ERRORS = {
    400: {"model": ErrorResponse, "description": "malformed request"},
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    413: {"model": ErrorResponse, "description": "upload or image too large"},
    415: {"model": ErrorResponse, "description": "unsupported content type"},
    422: {"model": ErrorResponse, "description": "invalid parameters or not a usable image"},
}
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")


def create_app(settings: ServerSettings, *, engine: Engine | None = None) -> FastAPI:
    """Build the API for the index in `settings` (or an already open `engine`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = engine or Engine.open(settings.index_dir, max_pixels=settings.max_pixels)
        await run_in_threadpool(lambda: opened.embedder)  # load the model before serving
        app.state.engine = opened
        metrics.watch_index(opened)
        yield

    app = FastAPI(
        title="stylefinder",
        version=__version__,
        summary="Visually similar items from a shop's catalog of clothing photos.",
        lifespan=lifespan,
    )
    metrics = Metrics()
    app.state.settings = settings
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout, metrics=metrics)
    body_limit = int(settings.max_upload_bytes * 4 / 3) + 65_536  # base64 and form overhead
    app.add_middleware(BodySizeLimit, max_bytes=body_limit)
    _add_error_handlers(app)

    def get_engine(request: Request) -> Engine:
        engine_: Engine = request.app.state.engine
        engine_.reload()  # commits from other workers and processes become visible
        return engine_

    def presented_key(
        api_key: str | None = Depends(_api_key_header),
        bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> str | None:
        return api_key or (bearer.credentials if bearer else None)

    def require_read(key: str | None = Depends(presented_key)) -> None:
        if settings.read_key and not _matches(key, settings.read_key, settings.admin_key):
            raise ApiError(401, "unauthorized", "this index needs a read or admin API key")

    def require_admin(key: str | None = Depends(presented_key)) -> None:
        if not settings.admin_key:
            raise ApiError(403, "writes_disabled", "writes are disabled: no admin key configured")
        if not _matches(key, settings.admin_key):
            raise ApiError(401, "unauthorized", "writes need the admin API key")

    read = [Depends(require_read)]

    @app.get("/healthz", response_model=Health, tags=["operations"])
    def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["operations"], responses={503: ERRORS[422]})
    def readyz(request: Request) -> Health:
        """Readiness: the index and the model are loaded."""
        engine_ = getattr(request.app.state, "engine", None)
        if engine_ is None:
            raise ApiError(503, "not_ready", "still loading the index and the model")
        return Health(status="ready", items=len(engine_), backbone=engine_.store.header.backbone)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics_route() -> Response:
        """Prometheus metrics: requests and latency per route, index size."""
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.post(
        "/v1/search",
        response_model=SearchResponse,
        tags=["search"],
        dependencies=read,
        responses=ERRORS,
        openapi_extra=_search_body_schema(),
    )
    async def search(request: Request, engine_: Engine = Depends(get_engine)) -> SearchResponse:
        """The k catalog items most similar to an image, sent as a multipart file upload
        (fields `image`, `k`, `filters` as JSON) or as JSON with the image base64-encoded."""
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            fields = await _form(request)
            data = await _file_field(fields, "image")
            k = _int_field(fields.get("k"), "k", default=5)
            filters = _json_field(fields.get("filters"), "filters", default={})
        elif content_type.startswith("application/json"):
            body = _parse(SearchRequest, await request.body())
            data, k, filters = _decode_base64(body.image_base64), body.k, body.filters
        else:
            raise ApiError(415, "unsupported_media_type", "send multipart/form-data or JSON")
        _check_upload(data, settings)
        if not 1 <= k <= MAX_K:
            raise ApiError(422, "invalid_k", f"k must be between 1 and {MAX_K}")
        filters = _check_filters(filters)
        results = await run_in_threadpool(engine_.recommend, data, k, filters=filters)
        return SearchResponse(results=[_result(r, request) for r in results])

    @app.get(
        "/v1/items/{item_id:path}/similar",
        response_model=SearchResponse,
        tags=["items"],
        dependencies=read,
        responses={**ERRORS, 404: ERRORS[422]},
    )
    def similar(
        item_id: str,
        request: Request,
        k: int = Query(5, ge=1, le=MAX_K),
        engine_: Engine = Depends(get_engine),
    ) -> SearchResponse:
        """More like this: the k items most similar to catalog item `item_id`, without it."""
        results = engine_.similar(item_id, k=k)
        return SearchResponse(results=[_result(r, request) for r in results])

    @app.get(
        "/v1/items/{item_id:path}/image",
        tags=["items"],
        dependencies=read,
        response_class=FileResponse,
        responses={404: ERRORS[422]},
    )
    def item_image(item_id: str, engine_: Engine = Depends(get_engine)) -> FileResponse:
        """The item's image file."""
        path = Path(engine_.image_path(engine_.item(item_id)))
        if not path.is_file():
            raise ApiError(404, "image_missing", f"the image file of {item_id!r} is gone")
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media_type)

    @app.get(
        "/v1/items/{item_id:path}",
        response_model=ItemResponse,
        tags=["items"],
        dependencies=read,
        responses={404: ERRORS[422]},
    )
    def get_item(item_id: str, request: Request, engine_: Engine = Depends(get_engine)):
        """One catalog item and its metadata."""
        return ItemResponse(item=_item_out(engine_.item(item_id), request))

    @app.get("/v1/items", response_model=ItemList, tags=["items"], dependencies=read)
    def list_items(
        request: Request,
        offset: int = Query(0, ge=0),
        limit: int = Query(20, ge=1, le=500),
        filter: list[str] = Query(
            default=[], description="metadata filter COLUMN:VALUE, repeatable"
        ),
        engine_: Engine = Depends(get_engine),
    ) -> ItemList:
        """A page of catalog items, optionally filtered on metadata."""
        try:
            filters = parse_filters(filter, ":")
        except ValueError as exc:
            raise ApiError(422, "invalid_filter", str(exc)) from None
        items, total = engine_.browse(offset=offset, limit=limit, filters=filters)
        return ItemList(
            items=[_item_out(i, request) for i in items], total=total, offset=offset, limit=limit
        )

    @app.post(
        "/v1/items",
        response_model=ItemResponse,
        status_code=201,
        tags=["catalog writes"],
        dependencies=[Depends(require_admin)],
        responses={**ERRORS, 200: {"model": ItemResponse, "description": "item replaced"}},
        openapi_extra=_item_body_schema(),
    )
    async def put_item(
        request: Request, response: Response, engine_: Engine = Depends(get_engine)
    ) -> ItemResponse:
        """Add an item, or replace the item with the same id (admin key). Multipart fields
        `id`, `image` (file) and `metadata` (JSON object), or the same as JSON with
        `image_base64`. Visible to the next search at once."""
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            fields = await _form(request)
            item_id = fields.get("id")
            if not isinstance(item_id, str):
                raise ApiError(422, "missing_id", "multipart field 'id' is required")
            data = await _file_field(fields, "image")
            metadata = _json_field(fields.get("metadata"), "metadata", default={})
        elif content_type.startswith("application/json"):
            body = _parse(ItemRequest, await request.body())
            item_id, metadata = body.id, body.metadata
            data = _decode_base64(body.image_base64)
        else:
            raise ApiError(415, "unsupported_media_type", "send multipart/form-data or JSON")
        _check_upload(data, settings)
        item, created = await run_in_threadpool(engine_.add_item, item_id, data, metadata)
        response.status_code = 201 if created else 200
        return ItemResponse(item=_item_out(item, request), created=created)

    @app.delete(
        "/v1/items/{item_id:path}",
        status_code=204,
        tags=["catalog writes"],
        dependencies=[Depends(require_admin)],
        responses={401: ERRORS[401], 404: ERRORS[422]},
    )
    async def delete_item(item_id: str, engine_: Engine = Depends(get_engine)) -> Response:
        """Remove an item (admin key)."""
        await run_in_threadpool(engine_.remove_item, item_id)
        return Response(status_code=204)

    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (used by `stylefinder serve --workers N`)."""
    return create_app(ServerSettings.from_env())


# -- helpers ---------------------------------------------------------------------------------------


def _matches(key: str | None, *allowed: str | None) -> bool:
    if not key:
        return False
    given = key.encode()
    return any(a and secrets.compare_digest(given, a.encode()) for a in allowed)


def _result(result: Recommendation, request: Request) -> dict:
    return {
        "id": result.id,
        "score": result.score,
        "metadata": result.metadata,
        "image_url": _image_url(result.id, request),
    }


def _item_out(item: Item, request: Request) -> ItemOut:
    return ItemOut(
        id=item.id,
        metadata=item.metadata,
        hash=item.hash,
        source=item.source,
        added_at=item.added_at,
        updated_at=item.updated_at,
        image_url=_image_url(item.id, request),
    )


def _image_url(item_id: str, request: Request) -> str:
    return f"{request.url_for('item_image', item_id=quote(item_id, safe='/')).path}"


async def _form(request: Request):
    try:
        return await request.form(max_files=2, max_fields=20)
    except StarletteHTTPException:
        raise
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        message = f"cannot parse the multipart body ({exc})"
        raise ApiError(400, "malformed_multipart", message) from None


async def _file_field(fields, name: str) -> bytes:
    upload = fields.get(name)
    if not isinstance(upload, UploadFile):
        raise ApiError(422, "missing_image", f"multipart field {name!r} must be an image file")
    return await upload.read()


def _int_field(value, name: str, *, default: int) -> int:
    if value is None:
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        raise ApiError(422, f"invalid_{name}", f"{name} must be an integer") from None


def _json_field(value, name: str, *, default):
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ApiError(422, f"invalid_{name}", f"{name} must be a JSON text field")
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ApiError(422, f"invalid_{name}", f"{name} is not valid JSON ({exc})") from None


def _parse(model, raw: bytes):
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError(
            422, "invalid_request", "the JSON body is not valid", _details(exc)
        ) from None


def _decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "invalid_base64", "image_base64 is not valid base64") from None


def _check_upload(data: bytes, settings: ServerSettings) -> None:
    if len(data) > settings.max_upload_bytes:
        raise ApiError(
            413,
            "upload_too_large",
            f"the image is {len(data):,} bytes; the limit is {settings.max_upload_bytes:,}",
        )


def _check_filters(filters) -> dict[str, list[str]]:
    if not isinstance(filters, dict):
        raise ApiError(422, "invalid_filters", "filters must be an object of column to values")
    clean: dict[str, list[str]] = {}
    for column, wanted in filters.items():
        values = [wanted] if isinstance(wanted, str) else wanted
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ApiError(422, "invalid_filters", f"filter {column!r} wants a string or strings")
        clean[column] = values
    return clean


def _details(exc: ValidationError | RequestValidationError) -> list[dict]:
    return [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", ""))}
        for error in exc.errors()
    ]


def _error(status: int, code: str, message: str, details: list | None = None) -> JSONResponse:
    body: dict = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", "invalid parameters", _details(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    for error_type, (status, code) in _LIBRARY_ERRORS.items():
        app.add_exception_handler(error_type, _library_error_handler(status, code))


#: How the library's errors are answered: status and error code (most specific class wins).
_LIBRARY_ERRORS: dict[type[Exception], tuple[int, str]] = {
    ImageTooLargeError: (413, "image_too_large"),
    BadImageError: (422, "bad_image"),
    UnknownItemError: (404, "unknown_item"),
    IndexStateError: (503, "index_unavailable"),
    ValueError: (422, "invalid_request"),
    StylefinderError: (422, "invalid_request"),
}


def _library_error_handler(status: int, code: str):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        message = exc.reason if isinstance(exc, BadImageError) else str(exc)
        return _error(status, code, message)

    return handle


def _search_body_schema() -> dict:
    return _body_schema(
        SearchRequest,
        {
            "image": {"type": "string", "format": "binary"},
            "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 5},
            "filters": {"type": "string", "description": "JSON object of column to values"},
        },
        required=["image"],
    )


def _item_body_schema() -> dict:
    return _body_schema(
        ItemRequest,
        {
            "id": {"type": "string"},
            "image": {"type": "string", "format": "binary"},
            "metadata": {"type": "string", "description": "JSON object of metadata"},
        },
        required=["id", "image"],
    )


def _body_schema(model, multipart: dict, required: list[str]) -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": multipart, "required": required}
                },
                "application/json": {"schema": model.model_json_schema()},
            },
        }
    }
