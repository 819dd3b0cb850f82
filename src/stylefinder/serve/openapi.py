"""The API's OpenAPI document: the errors it really answers, and bodies FastAPI cannot see
(multipart or JSON read by the route itself).

Example:
    >>> app.openapi = lambda: openapi_schema(app)  # doctest: +SKIP
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from stylefinder.serve.common import ERRORS

_ERROR_REF = "#/components/schemas/ErrorResponse"


def openapi_schema(app: FastAPI) -> dict:
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


def body_schema(model, multipart: dict, required: list[str]) -> dict:
    """`openapi_extra` of a route taking `model` as JSON or these fields as multipart.

    Example:
        >>> body = body_schema(RecognizeRequest, {"image": {"type": "string"}}, ["image"])
        ... # doctest: +SKIP
    """
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
