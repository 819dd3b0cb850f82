"""The API's FastAPI dependencies: the engine, the settings and the key checks.

Example:
    >>> @router.get("/v1/thing", dependencies=[Depends(require_read)])  # doctest: +SKIP
    ... def thing(engine: Engine = Depends(get_engine)): ...
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from stylefinder.engine import Engine
from stylefinder.serve.common import ApiError, api_key_header, bearer, matches, user_token_header
from stylefinder.serve.settings import ServerSettings


def get_settings(request: Request) -> ServerSettings:
    """The settings the app was made with."""
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    """The app's engine, loaded once in the lifespan, with the latest commit visible."""
    engine: Engine = request.app.state.engine
    engine.reload()  # commits from other workers and processes become visible
    return engine


def presented_key(
    api_key: str | None = Depends(api_key_header),
    bearer_: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> str | None:
    """The API key sent as `X-API-Key` or as `Authorization: Bearer`."""
    return api_key or (bearer_.credentials if bearer_ else None)


def require_read(
    key: str | None = Depends(presented_key), settings: ServerSettings = Depends(get_settings)
) -> None:
    """401 unless no read key is configured or the read or admin key was sent."""
    if settings.read_key and not matches(key, settings.read_key, settings.admin_key):
        raise ApiError(401, "unauthorized", "this index needs a read or admin API key")


def require_admin(
    key: str | None = Depends(presented_key), settings: ServerSettings = Depends(get_settings)
) -> None:
    """403 when writes are disabled (no admin key configured), 401 without the admin key."""
    if not settings.admin_key:
        raise ApiError(403, "writes_disabled", "writes are disabled: no admin key configured")
    if not matches(key, settings.admin_key):
        raise ApiError(401, "unauthorized", "writes need the admin API key")


def user_access(
    user_id: str,
    api_key: str | None = Depends(api_key_header),
    bearer_: HTTPAuthorizationCredentials | None = Depends(bearer),
    user_token: str | None = Depends(user_token_header),
    engine: Engine = Depends(get_engine),
    settings: ServerSettings = Depends(get_settings),
) -> None:
    """Let the admin key or `user_id`'s own token through (header `X-User-Token`, or a bearer
    that is not the admin key); 401 without credentials, 403 for a token that does not open
    this shopper's data."""
    presented = bearer_.credentials if bearer_ else None
    if matches(api_key, settings.admin_key) or matches(presented, settings.admin_key):
        return
    token = user_token or presented
    if token:
        if engine.events.verify_token(user_id, token):
            return
        raise ApiError(403, "forbidden", "this token does not open this shopper's data")
    raise ApiError(401, "unauthorized", "a shopper's data needs their token or the admin API key")
