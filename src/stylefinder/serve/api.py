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
import logging
import math
import mimetypes
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from stylefinder._version import __version__
from stylefinder.engine import Engine
from stylefinder.errors import (
    BackboneUnavailableError,
    BadFilterError,
    BadImageError,
    ImageTooLargeError,
    IndexStateError,
    NoSpaceError,
    StylefinderError,
    UnknownColumnError,
    UnknownItemError,
    UnknownUserError,
)
from stylefinder.recognize.recognition import CATEGORY_COLUMN, Recognition
from stylefinder.serve.common import (
    ERRORS,
    ApiError,
    api_key_header,
    bearer,
    details,
    display_out,
    filter_errors,
    image_url,
    load_json,
    matches,
    parse_body,
    present_metadata,
    query_filters,
    result_out,
)
from stylefinder.serve.limits import BodySizeLimit, Metrics, PrintablePath, RequestTimeout
from stylefinder.serve.schemas import (
    MAX_K,
    MAX_LIMIT,
    ErrorResponse,
    Health,
    ItemId,
    ItemList,
    ItemOut,
    ItemRequest,
    ItemResponse,
    Metadata,
    RecognitionOut,
    RecognizeRequest,
    SearchRequest,
    SearchResponse,
)
from stylefinder.serve.settings import ServerSettings
from stylefinder.serve.users import users_router
from stylefinder.shoppers.base import BadEventError
from stylefinder.types import Item

log = logging.getLogger(__name__)


#: Documented answers of the routes that take an image.
_IMAGE_ERRORS = {code: ERRORS[code] for code in (400, 401, 413, 415, 422)}
#: Documented answers of the routes that read an item.
_ITEM_ERRORS = {code: ERRORS[code] for code in (401, 404, 422)}


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
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(PrintablePath)
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout, metrics=metrics)
    body_limit = int(settings.max_upload_bytes * 4 / 3) + 65_536  # base64 and form overhead
    app.add_middleware(BodySizeLimit, max_bytes=body_limit)
    _add_error_handlers(app)

    def get_engine(request: Request) -> Engine:
        engine_: Engine = request.app.state.engine
        engine_.reload()  # commits from other workers and processes become visible
        return engine_

    def presented_key(
        api_key: str | None = Depends(api_key_header),
        bearer_: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> str | None:
        return api_key or (bearer_.credentials if bearer_ else None)

    def require_read(key: str | None = Depends(presented_key)) -> None:
        if settings.read_key and not matches(key, settings.read_key, settings.admin_key):
            raise ApiError(401, "unauthorized", "this index needs a read or admin API key")

    def require_admin(key: str | None = Depends(presented_key)) -> None:
        if not settings.admin_key:
            raise ApiError(403, "writes_disabled", "writes are disabled: no admin key configured")
        if not matches(key, settings.admin_key):
            raise ApiError(401, "unauthorized", "writes need the admin API key")

    read = [Depends(require_read)]

    @app.get("/healthz", response_model=Health, tags=["operations"])
    def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["operations"], responses={503: _NOT_READY})
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
        response_model_exclude_none=True,
        tags=["search"],
        dependencies=read,
        responses={**_IMAGE_ERRORS, 409: ERRORS[409]},
        openapi_extra=_search_body_schema(),
    )
    async def search(request: Request, engine_: Engine = Depends(get_engine)) -> SearchResponse:
        """The k catalog items most similar to an image, sent as a multipart file upload
        (fields `image`, `k`, `filters` as JSON, `same_category`) or as JSON with the image
        base64-encoded. With `same_category`, only items of the category recognized in the
        image are returned, and the recognition comes back too."""
        upload = await _image_upload(request, SearchRequest, settings)
        if upload.form is not None:
            k = _int_field(upload.form.get("k"), "k", default=5)
            filters = _json_field(upload.form.get("filters"), "filters", default={})
            same = _bool_field(upload.form.get("same_category"), "same_category")
        else:
            body = upload.body
            k, filters, same = body.k, body.filters, body.same_category
        if not 1 <= k <= MAX_K:
            raise ApiError(422, "invalid_k", f"k must be between 1 and {MAX_K}")
        filters = _check_filters(filters)
        recognition = None
        if same:
            _check_recognizer(engine_)
            recognition, category = await run_in_threadpool(_category, engine_, upload.data)
            filters = _both(filters, category)
        results = []
        if filters is not None:  # None: the filters exclude each other, nothing can pass
            results = await run_in_threadpool(engine_.recommend, upload.data, k, filters=filters)
        return SearchResponse(
            results=[result_out(r, request) for r in results],
            recognition=recognition.to_dict() if recognition else None,
        )

    @app.post(
        "/v1/recognize",
        response_model=RecognitionOut,
        tags=["search"],
        dependencies=read,
        responses=_IMAGE_ERRORS,
        openapi_extra=_recognize_body_schema(),
    )
    async def recognize(request: Request, engine_: Engine = Depends(get_engine)) -> dict:
        """The garment category (top 3, calibrated) and dominant colours of an image, sent as
        for /v1/search: multipart field `image`, or JSON `image_base64`."""
        upload = await _image_upload(request, RecognizeRequest, settings)
        _check_recognizer(engine_)
        recognition = await run_in_threadpool(engine_.recognize, upload.data)
        return recognition.to_dict()

    @app.get(
        "/v1/items/{item_id:path}/similar",
        response_model=SearchResponse,
        tags=["items"],
        dependencies=read,
        responses=_ITEM_ERRORS,
    )
    def similar(
        item_id: str,
        request: Request,
        k: int = Query(5, ge=1, le=MAX_K),
        engine_: Engine = Depends(get_engine),
    ) -> SearchResponse:
        """More like this: the k items most similar to catalog item `item_id`, without it."""
        results = engine_.similar(item_id, k=k)
        return SearchResponse(results=[result_out(r, request) for r in results])

    @app.get(
        "/v1/items/{item_id:path}/image",
        tags=["items"],
        dependencies=read,
        response_class=FileResponse,
        responses={
            200: {"content": {"image/*": {}}, "description": "the image file"},
            **_ITEM_ERRORS,
        },
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
        responses=_ITEM_ERRORS,
    )
    def get_item(item_id: str, request: Request, engine_: Engine = Depends(get_engine)):
        """One catalog item and its metadata."""
        return ItemResponse(item=_item_out(engine_.item(item_id), request))

    @app.get(
        "/v1/items",
        response_model=ItemList,
        tags=["items"],
        dependencies=read,
        responses={code: ERRORS[code] for code in (401, 422)},
    )
    def list_items(
        request: Request,
        offset: int = Query(0, ge=0, le=2**53),
        limit: int = Query(20, ge=1, le=MAX_LIMIT),
        filter: list[str] = Query(
            default=[], description="metadata filter COLUMN:VALUE, repeatable"
        ),
        engine_: Engine = Depends(get_engine),
    ) -> ItemList:
        """A page of catalog items, optionally filtered on metadata."""
        filters = query_filters(filter)
        with filter_errors("invalid_filter"):
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
        responses={
            **_IMAGE_ERRORS,
            403: ERRORS[403],
            200: {"model": ItemResponse, "description": "item replaced"},
        },
        openapi_extra=_item_body_schema(),
    )
    async def put_item(
        request: Request, response: Response, engine_: Engine = Depends(get_engine)
    ) -> ItemResponse:
        """Add an item, or replace the item with the same id (admin key). Multipart fields
        `id`, `image` (file) and `metadata` (JSON object), or the same as JSON with
        `image_base64`. Visible to the next search at once."""
        upload = await _image_upload(request, ItemRequest, settings)
        if upload.form is not None:
            item_id = upload.form.get("id")
            if not isinstance(item_id, str):
                raise ApiError(422, "missing_id", "multipart field 'id' is required")
            item_id = _validated(_ITEM_ID, item_id, "id")
            metadata = _json_field(upload.form.get("metadata"), "metadata", default={})
            metadata = _validated(_METADATA, metadata, "metadata")
        else:
            item_id, metadata = upload.body.id, upload.body.metadata
        item, created = await run_in_threadpool(engine_.add_item, item_id, upload.data, metadata)
        response.status_code = 201 if created else 200
        return ItemResponse(item=_item_out(item, request), created=created)

    @app.delete(
        "/v1/items/{item_id:path}",
        status_code=204,
        tags=["catalog writes"],
        dependencies=[Depends(require_admin)],
        responses={code: ERRORS[code] for code in (401, 403, 404, 422)},
    )
    async def delete_item(item_id: str, engine_: Engine = Depends(get_engine)) -> Response:
        """Remove an item (admin key)."""
        await run_in_threadpool(engine_.remove_item, item_id)
        return Response(status_code=204)

    app.include_router(users_router(settings, get_engine, require_admin))
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (used by `stylefinder serve --workers N`)."""
    return create_app(ServerSettings.from_env())


# -- helpers ---------------------------------------------------------------------------------------


@dataclass
class _ImageUpload:
    """An image sent to a route, with the other multipart fields or the validated JSON body."""

    data: bytes
    form: FormData | None = None
    body: BaseModel | None = None


async def _image_upload(
    request: Request, model: type[BaseModel], settings: ServerSettings
) -> _ImageUpload:
    """Read an image sent as multipart field `image` or as JSON `image_base64` (validated by
    `model`), within the upload limit. Decoding it is the library's job."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        fields = await _form(request)
        upload = _ImageUpload(await _file_field(fields, "image"), form=fields)
    elif content_type.startswith("application/json"):
        body = parse_body(model, await request.body())
        upload = _ImageUpload(_decode_base64(body.image_base64), body=body)
    else:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data or JSON")
    _check_upload(upload.data, settings)
    return upload


def _category(engine: Engine, data: bytes) -> tuple[Recognition, dict[str, list[str]]]:
    """The recognition of an image and the filter keeping items of its category (409 when the
    index was never annotated with the `category_pred` that filter needs)."""
    recognition = engine.recognize(data)
    category = engine.category_filter(recognition)
    if CATEGORY_COLUMN in category and CATEGORY_COLUMN not in engine.filter_columns():
        raise ApiError(
            409,
            "index_not_annotated",
            f"no item has {CATEGORY_COLUMN} metadata to match: index the catalog with "
            "`stylefinder index --imagenet-categories`, or `stylefinder tune` it on its labels",
        )
    return recognition, category


def _both(filters: dict[str, list[str]], more: dict[str, list[str]]) -> dict[str, list[str]] | None:
    """Filters passing items that pass both; None when a shared column allows nothing."""
    combined = dict(filters)
    for column, values in more.items():
        if column in combined:
            values = [v for v in combined[column] if v in values]
            if not values:
                return None
        combined[column] = values
    return combined


def _check_recognizer(engine: Engine) -> None:
    """409 `no_recognizer` when neither a tuned classifier nor the backbone's ImageNet head can
    tell an image's category."""
    projection = engine.projection
    if projection is not None and projection.classifier is not None:
        return
    if not engine.embedder.has_head:
        raise ApiError(
            409,
            "no_recognizer",
            f"the {engine.embedder.spec.name} backbone has no ImageNet head: `stylefinder tune` "
            "the index on its labels to recognize categories",
        )


def _item_out(item: Item, request: Request) -> ItemOut:
    return ItemOut(
        id=item.id,
        metadata=present_metadata(item.metadata),
        display=display_out(item.metadata, request),
        hash=item.hash,
        source=item.source,
        added_at=item.added_at,
        updated_at=item.updated_at,
        image_url=image_url(item.id, request),
    )


async def _form(request: Request):
    try:
        return await request.form(max_files=2, max_fields=20)
    except StarletteHTTPException:
        raise
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        message = f"cannot parse the multipart body ({exc})"
        raise ApiError(400, "malformed_multipart", message) from None


async def _file_field(fields: FormData, name: str) -> bytes:
    parts = fields.getlist(name)
    if len(parts) > 1:
        raise ApiError(
            422,
            "duplicate_field",
            f"the form has {len(parts)} parts named {name!r}; send one image per request",
        )
    upload = parts[0] if parts else None
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


def _bool_field(value, name: str) -> bool:
    if value is None or value == "":
        return False
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ApiError(422, f"invalid_{name}", f"{name} must be true or false")


def _json_field(value, name: str, *, default):
    """A multipart text field holding JSON (size and depth limited, see `load_json`)."""
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ApiError(422, f"invalid_{name}", f"{name} must be a JSON text field")
    return load_json(value, name)


_ITEM_ID = TypeAdapter(ItemId)
_METADATA = TypeAdapter(Metadata)


def _validated(adapter: TypeAdapter, value: object, name: str):
    """A multipart field's value checked as its JSON counterpart is (`ItemRequest`)."""
    try:
        return adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        found = [{"loc": [name, *e["loc"]], "msg": e["msg"]} for e in details(exc)]
        raise ApiError(422, "invalid_request", f"{name} is not valid", found) from None


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


def _check_filters(filters: object) -> dict[str, list[str | int | float]]:
    """Filters as the engine takes them: column to a list of text or numbers (a range is text:
    "<50", "20..80"); 422 `invalid_filters` for anything else (booleans, null, objects)."""
    if not isinstance(filters, dict):
        raise ApiError(422, "invalid_filters", "filters must be an object of column to values")
    clean: dict[str, list[str | int | float]] = {}
    for column, wanted in filters.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        if not all(_filter_value(value) for value in values):
            raise ApiError(
                422,
                "invalid_filters",
                f"filter {column!r} wants text, a number or a list of those (ranges as text: "
                '"<50", "20..80"); not true/false, null or objects',
            )
        clean[column] = values
    return clean


def _filter_value(value: object) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return abs(value) <= 2**53 if isinstance(value, int) else math.isfinite(value)


def _error(
    status: int,
    code: str,
    message: str,
    details: list | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", "invalid parameters", details(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return _error(exc.status_code, code, str(exc.detail), headers=headers or None)

    @app.exception_handler(UnknownColumnError)
    async def unknown_column(request: Request, exc: UnknownColumnError) -> JSONResponse:
        found = [{"msg": "unknown filter column", "known": exc.known}]
        return _error(422, "unknown_column", str(exc), found)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        message = "the server failed to answer this request; its log has the details"
        return _error(500, "internal_error", message)

    for error_type, (status, code) in _LIBRARY_ERRORS.items():
        app.add_exception_handler(error_type, _library_error_handler(status, code))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """The methods some route of the app answers at the request's path, for an `Allow` header.
    A path may be served by several routes (GET and DELETE /v1/items/{id}), and included
    routers hide their routes, so each method is tried against the app's router."""
    routes = request.app.router.routes

    def served(method: str) -> bool:
        scope = {**request.scope, "method": method}
        return any(route.matches(scope)[0] is Match.FULL for route in routes)

    return ", ".join(method for method in _METHODS if served(method))


#: How the library's errors are answered: status and error code (most specific class wins).
#: Only stylefinder's own errors are client errors; any other exception is a bug: a 500, logged.
_LIBRARY_ERRORS: dict[type[Exception], tuple[int, str]] = {
    ImageTooLargeError: (413, "image_too_large"),
    BadImageError: (422, "bad_image"),
    UnknownItemError: (404, "unknown_item"),
    UnknownUserError: (404, "unknown_user"),
    BadFilterError: (422, "invalid_filters"),
    BadEventError: (422, "invalid_request"),
    NoSpaceError: (507, "no_space"),
    BackboneUnavailableError: (503, "model_unavailable"),
    IndexStateError: (503, "index_unavailable"),
    StylefinderError: (422, "invalid_request"),
}
_NOT_READY = {"model": ErrorResponse, "description": "still loading the index and the model"}


def _library_error_handler(status: int, code: str):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        message = exc.reason if isinstance(exc, BadImageError) else str(exc)
        return _error(status, code, message)

    return handle


def _openapi(app: FastAPI) -> dict:
    """The app's OpenAPI schema, with the errors it really answers, all in the `ErrorResponse`
    shape (FastAPI's own 422 shape is never sent): every operation may get a 422 or a 504,
    those of /v1 a 503 (index unavailable), writes a 507 (disk full), bodies a 413."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                _document_errors(path, method, operation)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
    return app.openapi_schema


def _document_errors(path: str, method: str, operation: dict) -> None:
    error = {"content": {"application/json": {"schema": {"$ref": _ERROR_REF}}}}
    documented = {"422": ERRORS[422]["description"], "504": "the request took too long"}
    if path.startswith("/v1/"):
        documented["503"] = "the index is unavailable (missing, damaged or locked)"
    if method in ("post", "delete"):
        documented["507"] = "the disk holding the index is full"
    if "requestBody" in operation:
        documented["413"] = ERRORS[413]["description"]
    responses = operation["responses"]
    for status, description in documented.items():
        if status == "422" or status not in responses:
            responses[status] = {**error, "description": description}


_ERROR_REF = "#/components/schemas/ErrorResponse"


def _search_body_schema() -> dict:
    return _body_schema(
        SearchRequest,
        {
            "image": {"type": "string", "format": "binary"},
            "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 5},
            "filters": {"type": "string", "description": "JSON object of column to values"},
            "same_category": {
                "type": "boolean",
                "default": False,
                "description": "only items of the category recognized in the image",
            },
        },
        required=["image"],
    )


def _recognize_body_schema() -> dict:
    return _body_schema(
        RecognizeRequest, {"image": {"type": "string", "format": "binary"}}, required=["image"]
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
