"""Image -> network input, following a backbone's `Preprocessing` entry.

Example:
    >>> from PIL import Image
    >>> from stylefinder.embed.registry import get_backbone
    >>> prep = get_backbone("efficientnet-lite0").preprocessing
    >>> to_input(Image.new("RGB", (60, 90), "white"), prep).shape
    (224, 224, 3)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from stylefinder.embed.registry import Preprocessing


def fit_square(image: Image.Image, prep: Preprocessing) -> Image.Image:
    """Resize (and pad or crop) an RGB image to a `prep.input_size` square."""
    size = prep.input_size
    width, height = image.size
    if prep.fit == "crop":
        scale = size / prep.crop_fraction / min(width, height)
        resized = image.resize(
            (max(size, round(width * scale)), max(size, round(height * scale))),
            Image.BICUBIC,
            reducing_gap=3.0,
        )
        left = (resized.width - size) // 2
        top = (resized.height - size) // 2
        return resized.crop((left, top, left + size, top + size))
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = image.resize(new_size, Image.BICUBIC, reducing_gap=3.0)
    if new_size == (size, size):
        return resized
    canvas = Image.new("RGB", (size, size), border_colour(resized))
    canvas.paste(resized, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return canvas


def border_colour(image: Image.Image) -> tuple[int, int, int]:
    """The median colour of an image's outermost pixels (the backdrop of a product shot)."""
    pixels = np.asarray(image)
    edges = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return tuple(int(v) for v in np.median(edges, axis=0))


def to_input(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """An RGB image as the network's uint8 (size, size, 3) input; the graph normalizes it."""
    return np.array(fit_square(image, prep), dtype=np.uint8)


def draft_request(prep: Preprocessing) -> tuple[int, str]:
    """How small a JPEG may be decoded without losing detail: (pixels, "long" or "short" side).

    Padding keeps the whole image, so its longest side must reach `input_size`; cropping keeps
    the centre, so the shortest side must reach `input_size / crop_fraction`.
    """
    if prep.fit == "crop":
        return (round(prep.input_size / prep.crop_fraction), "short")
    return (prep.input_size, "long")
