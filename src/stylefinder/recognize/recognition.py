"""What garment an image shows and in which colours, from the index's classifier or ImageNet.

The category comes from the classifier trained by `stylefinder tune` on the shop's own labels
when the index has one (`source="classifier"`), else from a CLIP-family backbone's text prompts
(`source="zero-shot"`), else from the backbone's ImageNet head mapped to a small garment
taxonomy (`source="imagenet"`, see docs/taxonomy.md). Colours are named from a
fixed palette, the plain background of product shots left out.

Example:
    >>> recognition = engine.recognize("upload.jpg")  # doctest: +SKIP
    >>> recognition.category, [c.name for c in recognition.colours]  # doctest: +SKIP
    ('Dress', ['navy', 'white'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from stylefinder.errors import BadImageError
from stylefinder.recognize.colours import ColourShare, dominant_colours
from stylefinder.recognize.taxonomy import UNKNOWN, predict_garments

CATEGORY_COLUMN = "category_pred"
COLOURS_COLUMN = "colours"
RECOGNIZED_COLUMNS = (CATEGORY_COLUMN, COLOURS_COLUMN)  # kept while an item's image is unchanged


@dataclass(frozen=True)
class Recognition:
    """Top categories with calibrated probabilities, where they came from, and the colours."""

    categories: list[tuple[str, float]]
    source: str  # "classifier", "zero-shot" or "imagenet"
    colours: list[ColourShare]

    @property
    def category(self) -> str:
        """The most probable category ("unknown" when nothing garment-like is confident)."""
        return self.categories[0][0] if self.categories else UNKNOWN

    def to_dict(self) -> dict:
        return {
            "category": self.category,
            "categories": [{"label": c, "probability": round(p, 4)} for c, p in self.categories],
            "source": self.source,
            "colours": [
                {"name": c.name, "share": round(c.share, 4), "rgb": list(c.rgb)}
                for c in self.colours
            ],
        }


def top_categories(
    probabilities: np.ndarray, labels: Sequence[str], top: int = 3
) -> list[list[tuple[str, float]]]:
    """The `top` labels and probabilities of each row of `probabilities` (N, labels).

    Example:
        >>> top_categories(np.array([[0.1, 0.7, 0.2]]), ["a", "b", "c"], top=2)
        [[('b', 0.7), ('c', 0.2)]]
    """
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    pairs = zip(probabilities, order, strict=True)
    return [[(labels[j], float(row[j])) for j in best] for row, best in pairs]


def imagenet_categories(embedder, images: Sequence[Image.Image]) -> list[list[tuple[str, float]]]:
    """Garment categories from the backbone's ImageNet head (the fallback without labels)."""
    from stylefinder.embed.preprocess import to_input

    prep = embedder.spec.preprocessing
    batch = np.stack([to_input(image, prep) for image in images])
    return predict_garments(embedder.classify_inputs(batch))


MULTI = "multi"
#: An item with at least this many colours of 10% or more is also "multi" (a print of many).
MULTI_FROM = 4


def colour_value(colours: Sequence[ColourShare]) -> str:
    """The `colours` metadata value: names, most common first, comma-separated; the first
    three and "multi" where there are MULTI_FROM or more.

    Example:
        >>> four = [ColourShare(n, 0.25, (0, 0, 0)) for n in ("red", "blue", "green", "pink")]
        >>> colour_value(four)
        'red,blue,green,multi'
    """
    names = [c.name for c in colours]
    if len(names) >= MULTI_FROM:
        names = [*names[: MULTI_FROM - 1], MULTI]
    return ",".join(names)


def image_colours(image: Image.Image) -> str | None:
    """The `colours` metadata value of a decoded image; None when it has no colour to name.

    Example:
        >>> image_colours(Image.new("RGB", (32, 32), (200, 30, 30)))
        'red'
    """
    try:
        return colour_value(dominant_colours(image, max_colours=MULTI_FROM)) or None
    except BadImageError:
        return None
