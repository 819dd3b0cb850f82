"""Shoppers' routes (issue 8): tokens, events, personal recommendations, export and erasure.

A shopper's data is read or written with that shopper's token (header `X-User-Token`, or
`Authorization: Bearer <token>` when it is not the admin key) or with the admin key. No
credentials: 401; credentials that do not open this shopper's data (another shopper's token, an
old or made-up token): 403. Both are answered before anything is read or written.

Tokens are issued by the admin (`POST /v1/users/{id}/token`); without a configured admin key
none can be issued (403 `writes_disabled`, like the catalog writes). After
`DELETE /v1/users/{id}` the shopper's token no longer works (403) and the admin gets 404
`unknown_user` from export and recommendations until the shopper is recorded again.

Example:
    >>> app.include_router(router)  # doctest: +SKIP
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from stylefinder.engine import Engine
from stylefinder.serve.common import (
    ERRORS,
    ApiError,
    filter_errors,
    load_json,
    parse_body,
    query_filters,
    result_out,
)
from stylefinder.serve.deps import get_engine, require_admin, user_access
from stylefinder.serve.schemas import (
    MAX_JSON_BODY_BYTES,
    MAX_K,
    EventBatch,
    EventIn,
    EventsResponse,
    ImportSummaryOut,
    TokenResponse,
    UserDeleted,
    UserExport,
    UserRecommendations,
)

_USER = "/v1/users/{user_id:path}"
_AUTH_ERRORS = {code: ERRORS[code] for code in (401, 403, 404, 422)}


def _events_body_schema() -> dict:
    one = EventIn.model_json_schema()
    many = EventBatch.model_json_schema()
    many.pop("$defs", None)
    many["properties"]["events"]["items"] = one  # inline: OpenAPI cannot see pydantic's $defs
    schema = {"oneOf": [one, many]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _csv_body_schema() -> dict:
    csv_text = {
        "schema": {
            "type": "string",
            "description": "header user_id,item_id,kind[,timestamp][,weight]",
        }
    }
    content = {"text/csv": csv_text, "text/plain": csv_text}
    return {"requestBody": {"required": True, "content": content}}


router = APIRouter(tags=["shoppers"])
_AS_USER = [Depends(user_access)]
_AS_ADMIN = [Depends(require_admin)]


@router.post(
    "/v1/users/events:import",
    response_model=ImportSummaryOut,
    dependencies=_AS_ADMIN,
    responses={code: ERRORS[code] for code in (401, 403, 413, 415, 422)},
    openapi_extra=_csv_body_schema(),
)
async def import_events(request: Request, engine: Engine = Depends(get_engine)) -> dict:
    """Import events from CSV (header `user_id,item_id,kind[,timestamp][,weight]`, admin
    key): good rows are stored, bad ones rejected with their line number."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("text/csv", "text/plain")):
        raise ApiError(415, "unsupported_media_type", "send the CSV as text/csv")
    raw = await request.body()
    summary = await run_in_threadpool(engine.import_events, raw)
    return summary.to_dict()


@router.post(
    f"{_USER}/token",
    response_model=TokenResponse,
    status_code=201,
    dependencies=_AS_ADMIN,
    responses={code: ERRORS[code] for code in (401, 403, 422)},
)
def create_token(user_id: str, engine: Engine = Depends(get_engine)) -> TokenResponse:
    """A new access token for shopper `user_id` (admin key), recording the shopper if
    needed; the previous token stops working. Only its hash is kept: shown once."""
    token = engine.events.create_token(user_id)
    return TokenResponse(user_id=user_id.strip(), token=token)


@router.post(
    f"{_USER}/events",
    response_model=EventsResponse,
    status_code=201,
    dependencies=_AS_USER,
    responses={**_AUTH_ERRORS, 415: ERRORS[415]},
    openapi_extra=_events_body_schema(),
)
async def post_events(
    user_id: str, request: Request, engine: Engine = Depends(get_engine)
) -> EventsResponse:
    """Record what the shopper did: one event `{"item_id", "kind", "timestamp"?,
    "weight"?}` or `{"events": [...]}`, stored all or none (404 for an unknown item)."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ApiError(415, "unsupported_media_type", "send the events as JSON")
    events = _parse_events(await request.body())
    stored = await run_in_threadpool(engine.record_events, user_id, events)
    return EventsResponse(user_id=user_id.strip(), events=[e.to_dict() for e in stored])


@router.get(
    f"{_USER}/recommendations",
    response_model=UserRecommendations,
    dependencies=_AS_USER,
    responses=_AUTH_ERRORS,
)
def recommendations(
    user_id: str,
    request: Request,
    k: int = Query(10, ge=1, le=MAX_K),
    diversity: float | None = Query(
        None, ge=0, le=1, description="0: most relevant only, 1: most varied (default 0.3)"
    ),
    filter: list[str] = Query(default=[], description="metadata filter COLUMN:VALUE, repeatable"),
    engine: Engine = Depends(get_engine),
) -> UserRecommendations:
    """The k items to show the shopper, from their events (popular, varied items while
    they have no positive events yet); 404 for a shopper with no record."""
    filters = query_filters(filter)
    if not engine.events.has_user(user_id):
        raise ApiError(404, "unknown_user", f"no user {user_id.strip()!r}")
    with filter_errors("invalid_filter"):
        results = engine.recommend_for_user(user_id, k, filters=filters, diversity=diversity)
    return UserRecommendations(
        user_id=user_id.strip(), results=[result_out(r, request) for r in results]
    )


@router.get(
    f"{_USER}/export",
    response_model=UserExport,
    dependencies=_AS_USER,
    responses=_AUTH_ERRORS,
)
def export(user_id: str, engine: Engine = Depends(get_engine)) -> dict:
    """Everything stored about the shopper: their record and every event."""
    return engine.events.export_user(user_id)


@router.delete(
    _USER,
    response_model=UserDeleted,
    dependencies=_AS_USER,
    responses=_AUTH_ERRORS,
)
def delete_user(user_id: str, engine: Engine = Depends(get_engine)) -> UserDeleted:
    """Erase every trace of the shopper: events, record and token (the freed bytes of the
    database are overwritten). 404 when there was nothing to erase."""
    deleted = engine.events.delete_user(user_id)
    if not any(deleted.values()):
        raise ApiError(404, "unknown_user", f"no user {user_id.strip()!r}")
    return UserDeleted(user_id=user_id.strip(), deleted=deleted)


def _parse_events(raw: bytes) -> list[dict]:
    """The events of a body holding one event or {"events": [...]}, as plain mappings (at most
    `MAX_JSON_BODY_BYTES`, nested at most `MAX_JSON_DEPTH` levels)."""
    body = load_json(raw, "body", max_bytes=MAX_JSON_BODY_BYTES)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", 'send one event object or {"events": [...]}')
    if "events" in body:
        events = parse_body(EventBatch, raw).events
    else:
        events = [parse_body(EventIn, raw)]
    return [event.model_dump(exclude_none=True) for event in events]
