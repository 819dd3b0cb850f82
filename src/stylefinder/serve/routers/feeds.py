"""Product feeds: re-sync the feed the server was started with (admin).

Example:
    >>> # STYLEFINDER_FEED=https://shop.example/feed.xml stylefinder serve --index shop-index
    >>> # curl -X POST -H "X-API-Key: $KEY" localhost:8000/v1/feeds/sync
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from stylefinder.catalog.feeds.formats import FeedFormatError
from stylefinder.engine import Engine
from stylefinder.errors import RemovalGuardError
from stylefinder.jobs.feed import FeedSyncRunningError, sync_feed
from stylefinder.serve.common import ERRORS, ApiError, parse_body
from stylefinder.serve.deps import get_engine, get_settings, require_admin
from stylefinder.serve.schemas import (
    MAX_FEED_LISTED,
    MAX_JSON_FIELD_BYTES,
    ErrorResponse,
    FeedSyncRequest,
    FeedSyncResponse,
)
from stylefinder.serve.settings import ServerSettings

log = logging.getLogger(__name__)
router = APIRouter(tags=["catalog writes"])
T = TypeVar("T")

_RESPONSES = {
    **{code: ERRORS[code] for code in (401, 403, 415)},
    409: {
        "model": ErrorResponse,
        "description": "no_feed: the server has no feed configured; sync_running: a sync is "
        "running already; removals_need_confirmation: the sync would remove more than the "
        "removal guard allows (send confirm_removals); not_on_postgres",
    },
    502: {"model": ErrorResponse, "description": "feed_unavailable: the feed cannot be read"},
}
_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": FeedSyncRequest.model_json_schema()}},
    }
}


@router.post(
    "/v1/feeds/sync",
    response_model=FeedSyncResponse,
    dependencies=[Depends(require_admin)],
    responses=_RESPONSES,
    openapi_extra=_BODY,
)
async def sync(
    request: Request,
    engine: Engine = Depends(get_engine),
    settings: ServerSettings = Depends(get_settings),
) -> FeedSyncResponse:
    """Re-sync the product feed the server was started with (STYLEFINDER_FEED; admin key):
    download new and changed photos, index them, remove the products gone from the feed, and
    answer what was done. One sync at a time (409 `sync_running`). Removing more of the
    catalog than the removal guard allows needs `{"confirm_removals": true}` (409
    `removals_need_confirmation` otherwise, with nothing changed). A sync that outlasts the
    request timeout goes on in the background (the answer is a 504)."""
    if not settings.feed:
        raise ApiError(
            409,
            "no_feed",
            "this server has no product feed to sync: start it with STYLEFINDER_FEED set to "
            "the feed's path or URL (and STYLEFINDER_FEED_FORMAT when its format is not "
            "detected)",
        )
    body = await _body(request)
    asked: dict = {}

    def refuse(removals: list[str], items: int) -> bool:  # the API cannot ask: it refuses
        asked.update(would_remove=len(removals), items=items, first=removals[:10])
        return False

    options: dict = {"feed_format": settings.feed_format, "embedder": engine.embedder}
    if body.confirm_removals:
        options["allow_removals"] = True
    else:
        options["confirm"] = refuse
    try:
        summary = await _in_own_thread(sync_feed, settings.feed, settings.index_dir, **options)
    except FeedSyncRunningError as exc:
        raise ApiError(409, "sync_running", str(exc)) from None
    except FeedFormatError as exc:
        raise ApiError(502, "feed_unavailable", str(exc)) from None
    except RemovalGuardError as exc:
        count, items = asked.get("would_remove", len(exc.removals)), asked.get("items")
        of = f" of the catalog's {items} items" if items else ""
        raise ApiError(
            409,
            "removals_need_confirmation",
            f"this sync would remove {count}{of}, more than the removal guard allows (a feed "
            "cut short or wrong?); nothing was changed. Check the feed; to go ahead, send "
            '{"confirm_removals": true}',
            [{"would_remove": count, "items": items, "first": exc.removals[:10]}],
        ) from None
    await run_in_threadpool(engine.reload)
    out = summary.to_dict(max_failures=MAX_FEED_LISTED)
    out["removed_ids"] = out["removed_ids"][:MAX_FEED_LISTED]
    out["problems"] = out["problems"][:MAX_FEED_LISTED]
    return FeedSyncResponse.model_validate(out)


async def _body(request: Request) -> FeedSyncRequest:
    """The optional JSON body (empty: the defaults)."""
    raw = await request.body()
    if not raw.strip():
        return FeedSyncRequest()
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ApiError(415, "unsupported_media_type", "send the options as JSON")
    return parse_body(FeedSyncRequest, raw, max_bytes=MAX_JSON_FIELD_BYTES)


async def _in_own_thread(function: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run `function` on a thread of its own and wait for it. Unlike the worker pool's
    threads, an abandoned wait (the request timed out, the client left) is not held until the
    sync ends: the answer goes at once and the sync finishes in the background (its lock
    keeps a second one out meanwhile)."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as exc:  # handed to the waiting request
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    threading.Thread(target=run, name="feed-sync", daemon=True).start()
    return await asyncio.wrap_future(future)
