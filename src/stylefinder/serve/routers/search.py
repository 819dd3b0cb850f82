"""Search by image, recognition, and more like a catalog item."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from stylefinder.engine import Engine
from stylefinder.recognize.recognition import CATEGORY_COLUMN, Recognition
from stylefinder.recommend.hybrid import check_text
from stylefinder.recommend.text_query import TextQuery
from stylefinder.serve.common import (
    ERRORS,
    IMAGE_ERRORS,
    ITEM_ERRORS,
    ApiError,
    filter_errors,
    query_filters,
    result_out,
)
from stylefinder.serve.deps import get_engine, get_settings, require_read
from stylefinder.serve.openapi import body_schema
from stylefinder.serve.schemas import (
    MAX_K,
    RecognitionOut,
    RecognizeRequest,
    SearchRequest,
    SearchResponse,
)
from stylefinder.serve.settings import ServerSettings
from stylefinder.serve.uploads import bool_field, image_upload, int_field, json_field

router = APIRouter(dependencies=[Depends(require_read)])

_SEARCH_FORM = {
    "image": {"type": "string", "format": "binary"},
    "text": {"type": "string", "maxLength": 500, "description": "words to search for"},
    "text_weight": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
    "expand": {"type": "boolean", "default": True},
    "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 5},
    "filters": {"type": "string", "description": "JSON object of column to values"},
    "same_category": {
        "type": "boolean",
        "default": False,
        "description": "only items of the category recognized in the image",
    },
}


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    response_model_exclude_none=True,
    tags=["search"],
    responses={**IMAGE_ERRORS, 409: ERRORS[409]},
    openapi_extra=body_schema(SearchRequest, _SEARCH_FORM, required=[]),
)
async def search(
    request: Request,
    engine: Engine = Depends(get_engine),
    settings: ServerSettings = Depends(get_settings),
) -> SearchResponse:
    """The k catalog items that best match an image, words (`text`), or both, sent as a
    multipart form (fields `image`, `text`, `k`, `filters` as JSON, `same_category`,
    `text_weight`, `expand`) or as JSON with the image base64-encoded. Words match the items'
    metadata; with an image too, the two rankings are fused ("like this photo, but in red").
    With `same_category`, only items of the category recognized in the image are returned,
    and the recognition comes back too."""
    upload = await image_upload(request, SearchRequest, settings, optional=True)
    if upload.form is not None:
        form = upload.form
        query = _SearchQuery(
            text=_text_field(form.get("text")),
            k=int_field(form.get("k"), "k", default=5),
            filters=json_field(form.get("filters"), "filters", default={}),
            same=bool_field(form.get("same_category"), "same_category"),
            text_weight=_weight_field(form.get("text_weight")),
            expand=form.get("expand") in (None, "") or bool_field(form.get("expand"), "expand"),
        )
    else:
        body = upload.body
        query = _SearchQuery(
            body.text, body.k, body.filters, body.same_category, body.text_weight, body.expand
        )
    if upload.data is None and query.text is None:
        raise ApiError(422, "missing_query", "send an image, text, or both")
    if query.text is not None:
        try:  # on a CLIP-family index any text has a meaning; else it needs a word to match
            check_text(query.text) if engine.embeds_text else TextQuery.parse(query.text)
        except ValueError as exc:
            raise ApiError(422, "invalid_text", str(exc)) from None
    if not 1 <= query.k <= MAX_K:
        raise ApiError(422, "invalid_k", f"k must be between 1 and {MAX_K}")
    filters = _check_filters(query.filters)
    recognition = None
    if query.same:
        if upload.data is None:
            raise ApiError(422, "missing_image", "same_category needs an image")
        _check_recognizer(engine)
        recognition, category = await run_in_threadpool(_category, engine, upload.data)
        filters = _both(filters, category)
    results = []
    if filters is not None:  # None: the filters exclude each other, nothing can pass
        results = await run_in_threadpool(_answer, engine, upload.data, query, filters)
    return SearchResponse(
        results=[result_out(r, request) for r in results],
        recognition=recognition.to_dict() if recognition else None,
    )


@dataclass(frozen=True)
class _SearchQuery:
    text: str | None
    k: int
    filters: object
    same: bool
    text_weight: float
    expand: bool


def _answer(engine: Engine, image: bytes | None, query: _SearchQuery, filters):
    if query.text is None:
        return engine.recommend(image, query.k, filters=filters)
    options = {"filters": filters, "text_weight": query.text_weight, "expand": query.expand}
    return engine.search(query.text, image, query.k, **options)


def _text_field(value) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 500:
        raise ApiError(422, "invalid_text", "text must be a text field of 500 characters at most")
    return value


def _weight_field(value) -> float:
    if value is None or value == "":
        return 0.5
    try:
        weight = float(str(value).strip())
    except ValueError:
        weight = math.nan
    if not 0.0 <= weight <= 1.0:
        raise ApiError(422, "invalid_text_weight", "text_weight must be a number from 0 to 1")
    return weight


@router.post(
    "/v1/recognize",
    response_model=RecognitionOut,
    tags=["search"],
    responses=IMAGE_ERRORS,
    openapi_extra=body_schema(
        RecognizeRequest, {"image": {"type": "string", "format": "binary"}}, required=["image"]
    ),
)
async def recognize(
    request: Request,
    engine: Engine = Depends(get_engine),
    settings: ServerSettings = Depends(get_settings),
) -> dict:
    """The garment category (top 3, calibrated) and dominant colours of an image, sent as
    for /v1/search: multipart field `image`, or JSON `image_base64`."""
    upload = await image_upload(request, RecognizeRequest, settings)
    _check_recognizer(engine)
    recognition = await run_in_threadpool(engine.recognize, upload.data)
    return recognition.to_dict()


@router.get(
    "/v1/items/{item_id:path}/similar",
    response_model=SearchResponse,
    tags=["items"],
    responses=ITEM_ERRORS,
)
def similar(
    item_id: str,
    request: Request,
    k: int = Query(5, ge=1, le=MAX_K),
    filter: list[str] = Query(default=[], description="metadata filter COLUMN:VALUE, repeatable"),
    engine: Engine = Depends(get_engine),
) -> SearchResponse:
    """More like this: the k items most similar to catalog item `item_id`, without it, that
    pass the `filter`s."""
    filters = query_filters(filter)
    with filter_errors("invalid_filter"):
        results = engine.similar(item_id, k=k, filters=filters)
    return SearchResponse(results=[result_out(r, request) for r in results])


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
    """409 `no_recognizer` when neither a tuned classifier, nor a CLIP-family backbone's
    prompts, nor the backbone's ImageNet head can tell an image's category."""
    projection = engine.projection
    if (projection is not None and projection.classifier is not None) or engine.embeds_text:
        return
    if not engine.embedder.has_head:
        raise ApiError(
            409,
            "no_recognizer",
            f"the {engine.embedder.spec.name} backbone has no ImageNet head: `stylefinder tune` "
            "the index on its labels to recognize categories",
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
