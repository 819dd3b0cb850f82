"""Checks for items added one at a time (the API's `PUT /v1/items`, `Engine.add_item`).

Example:
    >>> check_metadata({"price": 20, "sale": True, "category": "Dress"})
    {'price': 20, 'sale': 'true', 'category': 'Dress'}
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping

from PIL import Image

MAX_ID_LENGTH = 256  # the limits of added items (the API's schema uses them too)
MAX_METADATA_FIELDS = 64
MAX_METADATA_VALUE = 2000  # characters of one metadata value
RESERVED_METADATA = frozenset({"id", "path"})
_EXTENSIONS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}


def check_item_id(item_id: str) -> str:
    """The id, stripped, or a `ValueError` saying what an id may be.

    Example:
        >>> check_item_id(" sku-1 ")
        'sku-1'
    """
    if not isinstance(item_id, str) or not item_id.strip():
        raise ValueError("item id must be a non-empty string")
    if len(item_id) > MAX_ID_LENGTH or any(ord(c) < 32 for c in item_id):
        raise ValueError(f"item id must be at most {MAX_ID_LENGTH} printable characters")
    return item_id.strip()


def check_metadata(metadata: Mapping[str, object]) -> dict[str, str | int | float]:
    """Metadata as stored: numbers stay numbers (range filters compare them), booleans become
    text; a `ValueError` for names, types or sizes that are not allowed."""
    if not isinstance(metadata, Mapping):
        raise ValueError("metadata must be an object of names to values")
    if len(metadata) > MAX_METADATA_FIELDS:
        raise ValueError(f"metadata may have at most {MAX_METADATA_FIELDS} fields")
    clean = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or key in RESERVED_METADATA:
            raise ValueError(f"metadata field name {key!r} is not allowed")
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"metadata field {key!r} must be a string or a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"metadata field {key!r} must be a finite number")
        text = str(value)
        if len(text) > MAX_METADATA_VALUE:
            raise ValueError(f"metadata field {key!r} is longer than {MAX_METADATA_VALUE}")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        clean[key] = value if number else text.lower() if isinstance(value, bool) else text
    return clean


def image_extension(data: bytes) -> str:
    """The file extension for an image's bytes, from its decoded format.

    Example:
        >>> buffer = io.BytesIO(); Image.new("RGB", (2, 2)).save(buffer, "PNG")
        >>> image_extension(buffer.getvalue())
        '.png'
    """
    with Image.open(io.BytesIO(data)) as image:
        return _EXTENSIONS.get(image.format or "", ".img")
