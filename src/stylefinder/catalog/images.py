"""Safe image decoding: any supported file, bytes or PIL image in, an 8-bit RGB image out.

Every failure (empty, truncated, corrupt, non-image, unsupported format, too many pixels) raises
`BadImageError` with a message that says what was wrong; nothing else escapes.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stylefinder.catalog.remote import is_remote, read_remote
from stylefinder.errors import BadImageError, ImageTooLargeError

ImageSource = Union[str, Path, bytes, bytearray, memoryview, Image.Image]  # noqa: UP007

#: File name extensions that the catalog scanner treats as images.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)
#: Formats Pillow may decode for us; anything else (PSD, ICO, PDF, ...) is refused.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})
#: Default ceiling on width x height; larger files are treated as decompression bombs.
DEFAULT_MAX_PIXELS = 40_000_000


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
    draft_side: str = "short",
) -> Image.Image:
    """Decode `source` into an upright 8-bit RGB image, or raise `BadImageError`.

    Transparent pixels are composited on white (the usual product-shot background), EXIF
    orientation is applied, 16-bit and CMYK images are converted. `draft_size` lets JPEG decode
    at a reduced scale (1/2, 1/4, 1/8) that keeps at least that many pixels on its `draft_side`
    ("short" or "long"), which is several times faster for large photos.

    Example:
        >>> img = load_image("shirt.png")  # doctest: +SKIP
        >>> img.mode  # doctest: +SKIP
        'RGB'
    """
    name = _describe(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        image = _open(source, name, max_pixels)
    try:
        if image.format is not None and image.format not in SUPPORTED_FORMATS:
            raise BadImageError(f"{name}: unsupported image format {image.format}")
        width, height = image.size
        if width < 1 or height < 1:
            raise BadImageError(f"{name}: image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise _too_large(name, width * height, max_pixels, f"{width}x{height} pixels is ")
        if draft_size and image.format in {"JPEG", "MPO"}:
            side = max(width, height) if draft_side == "long" else min(width, height)
            scale = draft_size / side
            image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
        with warnings.catch_warnings():  # `max_pixels` was checked above: it is the limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own hard limit, when it is lower
        raise _pillow_bomb(name, exc, max_pixels) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImageError(f"{name}: cannot decode image ({exc})") from exc


def _open(source: ImageSource, name: str, max_pixels: int) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise BadImageError(f"{name}: empty input")
        stream: io.BytesIO | Path = io.BytesIO(data)
    elif is_remote(source):  # object storage, through pyarrow
        try:
            data = read_remote(source)
        except OSError as exc:
            raise BadImageError(f"{name}: cannot read ({exc})") from exc
        if not data:
            raise BadImageError(f"{name}: empty file")
        stream = io.BytesIO(data)
    else:
        stream = Path(source)
        try:
            if stream.stat().st_size == 0:
                raise BadImageError(f"{name}: empty file")
        except FileNotFoundError as exc:
            raise BadImageError(f"{name}: file not found") from exc
        except IsADirectoryError as exc:
            raise BadImageError(f"{name}: is a directory") from exc
    try:
        with warnings.catch_warnings():  # the caller checks the size against `max_pixels`
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(stream)
    except UnidentifiedImageError as exc:
        raise BadImageError(f"{name}: not an image file (or an unsupported format)") from exc
    except Image.DecompressionBombError as exc:
        raise _pillow_bomb(name, exc, max_pixels) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadImageError(f"{name}: cannot open image ({exc})") from exc


def _too_large(name: str, pixels: int, limit: int, size: str = "") -> ImageTooLargeError:
    """The error for an image over `limit` pixels, in megapixels, saying what to do."""
    return ImageTooLargeError(
        f"{name}: {size}{_megapixels(pixels)} megapixels, over the {_megapixels(limit)} MP "
        f"limit ({limit:,} pixels; possible decompression bomb); if the image is genuine, "
        "shrink it or raise max_pixels"
    )


def _pillow_bomb(name: str, exc: Exception, max_pixels: int) -> ImageTooLargeError:
    """Pillow refused the image before we could see its size: quote the limit that applied."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    ceiling = 2 * (Image.MAX_IMAGE_PIXELS or 0)  # Pillow's hard limit, at twice its setting
    limit = min(max_pixels, ceiling) if ceiling else max_pixels
    if found is None:
        return ImageTooLargeError(
            f"{name}: over the {_megapixels(limit)} MP limit (possible decompression bomb)"
        )
    return _too_large(name, int(found.group(1)), limit)


def _megapixels(pixels: int) -> str:
    """`52_100_000` -> '52.1', `40_000_000` -> '40', `5_000` -> '0.005'."""
    value = pixels / 1e6
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}:
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I") and pixels.max(initial=0) > 255 else 255.0
        if mode == "F":
            low, high = float(pixels.min(initial=0)), float(pixels.max(initial=1))
            pixels, top = pixels - low, max(high - low, 1e-12)
        grey = np.clip(pixels / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, Image.Image):
        return "image"
    return f"uploaded bytes ({len(source)} bytes)"
