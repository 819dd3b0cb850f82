"""Catalog items: read one, its image, a page of them; add, replace or remove one (admin)."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import TypeAdapter

from stylefinder.catalog.remote import is_remote, read_remote
from stylefinder.engine import Engine
from stylefinder.serve.common import (
    ERRORS,
    IMAGE_ERRORS,
    ITEM_ERRORS,
    ApiError,
    display_out,
    filter_errors,
    image_url,
    present_metadata,
    query_filters,
)
from stylefinder.serve.deps import get_engine, get_settings, require_admin, require_read
from stylefinder.serve.openapi import body_schema
from stylefinder.serve.schemas import (
    MAX_LIMIT,
    ItemId,
    ItemList,
    ItemOut,
    ItemRequest,
    ItemResponse,
    Metadata,
)
from stylefinder.serve.settings import ServerSettings
from stylefinder.serve.uploads import image_upload, json_field, validated
from stylefinder.types import Item

router = APIRouter()

_READ = [Depends(require_read)]
_ADMIN = [Depends(require_admin)]
_ITEM_ID = TypeAdapter(ItemId)
_METADATA = TypeAdapter(Metadata)
_ITEM_FORM = {
    "id": {"type": "string"},
    "image": {"type": "string", "format": "binary"},
    "metadata": {"type": "string", "description": "JSON object of metadata"},
}


@router.get(
    "/v1/items/{item_id:path}/image",
    tags=["items"],
    dependencies=_READ,
    response_class=FileResponse,
    responses={
        200: {"content": {"image/*": {}}, "description": "the image file"},
        **ITEM_ERRORS,
    },
)
def item_image(item_id: str, engine: Engine = Depends(get_engine)) -> Response:
    """The item's image file."""
    item = engine.item(item_id)
    location = engine.image_path(item)
    path = Path(location)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if (data := engine.view.stored_image(item)) is not None:  # kept in the database
        return Response(data, media_type=media_type)
    if is_remote(location):  # on object storage: read through pyarrow
        try:
            return Response(read_remote(location), media_type=media_type)
        except OSError as error:
            raise ApiError(404, "image_missing", f"the image of {item_id!r}: {error}") from None
    if not path.is_file():
        raise ApiError(404, "image_missing", f"the image file of {item_id!r} is gone")
    return FileResponse(path, media_type=media_type)


@router.get(
    "/v1/items/{item_id:path}",
    response_model=ItemResponse,
    tags=["items"],
    dependencies=_READ,
    responses=ITEM_ERRORS,
)
def get_item(item_id: str, request: Request, engine: Engine = Depends(get_engine)):
    """One catalog item and its metadata."""
    return ItemResponse(item=_item_out(engine.item(item_id), request))


@router.get(
    "/v1/items",
    response_model=ItemList,
    tags=["items"],
    dependencies=_READ,
    responses={code: ERRORS[code] for code in (401, 422)},
)
def list_items(
    request: Request,
    offset: int = Query(0, ge=0, le=2**53),
    limit: int = Query(20, ge=1, le=MAX_LIMIT),
    filter: list[str] = Query(default=[], description="metadata filter COLUMN:VALUE, repeatable"),
    engine: Engine = Depends(get_engine),
) -> ItemList:
    """A page of catalog items, optionally filtered on metadata."""
    filters = query_filters(filter)
    with filter_errors("invalid_filter"):
        items, total = engine.browse(offset=offset, limit=limit, filters=filters)
    return ItemList(
        items=[_item_out(i, request) for i in items], total=total, offset=offset, limit=limit
    )


@router.post(
    "/v1/items",
    response_model=ItemResponse,
    status_code=201,
    tags=["catalog writes"],
    dependencies=_ADMIN,
    responses={
        **IMAGE_ERRORS,
        403: ERRORS[403],
        200: {"model": ItemResponse, "description": "item replaced"},
    },
    openapi_extra=body_schema(ItemRequest, _ITEM_FORM, required=["id", "image"]),
)
async def put_item(
    request: Request,
    response: Response,
    engine: Engine = Depends(get_engine),
    settings: ServerSettings = Depends(get_settings),
) -> ItemResponse:
    """Add an item, or replace the item with the same id (admin key). Multipart fields
    `id`, `image` (file) and `metadata` (JSON object), or the same as JSON with
    `image_base64`. Visible to the next search at once."""
    upload = await image_upload(request, ItemRequest, settings)
    if upload.form is not None:
        item_id = upload.form.get("id")
        if not isinstance(item_id, str):
            raise ApiError(422, "missing_id", "multipart field 'id' is required")
        item_id = validated(_ITEM_ID, item_id, "id")
        metadata = json_field(upload.form.get("metadata"), "metadata", default={})
        metadata = validated(_METADATA, metadata, "metadata")
    else:
        item_id, metadata = upload.body.id, upload.body.metadata
    item, created = await run_in_threadpool(engine.add_item, item_id, upload.data, metadata)
    response.status_code = 201 if created else 200
    return ItemResponse(item=_item_out(item, request), created=created)


@router.delete(
    "/v1/items/{item_id:path}",
    status_code=204,
    tags=["catalog writes"],
    dependencies=_ADMIN,
    responses={code: ERRORS[code] for code in (401, 403, 404, 422)},
)
async def delete_item(item_id: str, engine: Engine = Depends(get_engine)) -> Response:
    """Remove an item (admin key)."""
    await run_in_threadpool(engine.remove_item, item_id)
    return Response(status_code=204)


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
