"""The HTTP API: a FastAPI app factory over one index, loaded once in the lifespan.

The routes live in `stylefinder.serve.routers`, their dependencies (engine, settings, keys) in
`stylefinder.serve.deps`; this module puts them together with the middleware, the error
answers and the OpenAPI document.

Example:
    >>> settings = ServerSettings(index_dir="shop-index", admin_key="s3cret")
    >>> app = create_app(settings)  # doctest: +SKIP
    >>> # uvicorn.run(app) or fastapi.testclient.TestClient(app)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from stylefinder._version import __version__
from stylefinder.engine import Engine
from stylefinder.errors import (
    BackboneUnavailableError,
    BadFilterError,
    BadImageError,
    DatabaseError,
    ImageTooLargeError,
    IndexStateError,
    NoSpaceError,
    NotOnPostgresError,
    StylefinderError,
    UnknownColumnError,
    UnknownItemError,
    UnknownUserError,
)
from stylefinder.recognize.colours import warm_up
from stylefinder.serve.common import ApiError, details
from stylefinder.serve.limits import BodySizeLimit, Metrics, PrintablePath, RequestTimeout
from stylefinder.serve.openapi import openapi_schema
from stylefinder.serve.routers import feeds, items, ops, search, users
from stylefinder.serve.settings import ServerSettings
from stylefinder.shoppers.base import BadEventError

log = logging.getLogger(__name__)


def create_app(settings: ServerSettings, *, engine: Engine | None = None) -> FastAPI:
    """Build the API for the index in `settings` (or an already open `engine`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = engine or Engine.open(settings.index_dir, max_pixels=settings.max_pixels)
        await run_in_threadpool(lambda: opened.embedder)  # load the model before serving
        await run_in_threadpool(warm_up)  # and the colour kernels (compiled once per install)
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
    app.state.metrics = metrics
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    app.add_middleware(PrintablePath)
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout, metrics=metrics)
    body_limit = int(settings.max_upload_bytes * 4 / 3) + 65_536  # base64 and form overhead
    app.add_middleware(BodySizeLimit, max_bytes=body_limit)
    _add_error_handlers(app)
    # search before items: /v1/items/{id}/similar would otherwise match /v1/items/{id}
    for module in (ops, search, items, users, feeds):
        app.include_router(module.router)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (used by `stylefinder serve --workers N`)."""
    return create_app(ServerSettings.from_env())


# -- error answers ---------------------------------------------------------------------------------

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
    DatabaseError: (503, "database_unavailable"),
    NotOnPostgresError: (409, "not_on_postgres"),
    StylefinderError: (422, "invalid_request"),
}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


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


def allowed_methods(request: Request) -> str:
    """The methods some route of the app answers at the request's path, for an `Allow` header.
    A path may be served by several routes (GET and DELETE /v1/items/{id}), and included
    routers hide their routes, so each method is tried against the app's router."""
    routes = request.app.router.routes

    def served(method: str) -> bool:
        scope = {**request.scope, "method": method}
        return any(route.matches(scope)[0] is Match.FULL for route in routes)

    return ", ".join(method for method in _METHODS if served(method))


def _library_error_handler(status: int, code: str):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        message = exc.reason if isinstance(exc, BadImageError) else str(exc)
        return _error(status, code, message)

    return handle
