"""Reading what a route was sent: an image as a multipart file or base64 JSON, and the other
multipart fields checked as their JSON counterparts are. Multipart is parsed by Starlette
(python-multipart); decoding the image is the library's job.

Example:
    >>> upload = await image_upload(request, SearchRequest, settings)  # doctest: +SKIP
    >>> k = int_field(upload.form.get("k"), "k", default=5) if upload.form else upload.body.k
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from fastapi import Request
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from stylefinder.serve.common import ApiError, details, load_json, parse_body
from stylefinder.serve.settings import ServerSettings


@dataclass
class ImageUpload:
    """An image sent to a route, with the other multipart fields or the validated JSON body."""

    data: bytes | None  # None: no image was sent (where one is optional)
    form: FormData | None = None
    body: BaseModel | None = None


async def image_upload(
    request: Request, model: type[BaseModel], settings: ServerSettings, *, optional: bool = False
) -> ImageUpload:
    """Read an image sent as multipart field `image` or as JSON `image_base64` (validated by
    `model`), within the upload limit; with `optional`, no image is `data=None`."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        fields = await _form(request)
        absent = optional and not fields.getlist("image")
        data = None if absent else await _file_field(fields, "image")
        upload = ImageUpload(data, form=fields)
    elif content_type.startswith("application/json"):
        body = parse_body(model, await request.body())
        text = body.image_base64
        upload = ImageUpload(None if text is None else _decode_base64(text), body=body)
    else:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data or JSON")
    if upload.data is not None:
        _check_upload(upload.data, settings)
    return upload


def int_field(value, name: str, *, default: int) -> int:
    """A multipart text field holding an integer, or 422 `invalid_{name}`."""
    if value is None:
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        raise ApiError(422, f"invalid_{name}", f"{name} must be an integer") from None


def bool_field(value, name: str) -> bool:
    """A multipart text field holding true/false (1/0, yes/no, on/off); absent is false."""
    if value is None or value == "":
        return False
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ApiError(422, f"invalid_{name}", f"{name} must be true or false")


def json_field(value, name: str, *, default):
    """A multipart text field holding JSON (size and depth limited, see `load_json`)."""
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ApiError(422, f"invalid_{name}", f"{name} must be a JSON text field")
    return load_json(value, name)


def validated(adapter: TypeAdapter, value: object, name: str):
    """A multipart field's value checked as its JSON counterpart is (strictly), or a 422."""
    try:
        return adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        found = [{"loc": [name, *e["loc"]], "msg": e["msg"]} for e in details(exc)]
        raise ApiError(422, "invalid_request", f"{name} is not valid", found) from None


async def _form(request: Request) -> FormData:
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
