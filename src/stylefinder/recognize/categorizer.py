"""Who names a garment's category: the index's own classifier (trained by `stylefinder tune`)
when it has one, else a CLIP-family backbone's zero-shot prompts (`recognize.zero_shot`), else
the backbone's ImageNet head mapped to the garment taxonomy.

Example:
    >>> categorizer = Categorizer(None, backbone="efficientnet_lite0")
    >>> categorizer.source
    'imagenet'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
from PIL import Image

from stylefinder.recognize.colours import dominant_colours
from stylefinder.recognize.recognition import (
    CATEGORY_COLUMN,
    COLOURS_COLUMN,
    Recognition,
    image_colours,
    top_categories,
)
from stylefinder.recognize.taxonomy import UNKNOWN, predict_garments
from stylefinder.recognize.zero_shot import ZeroShot


class _Labels(Protocol):
    labels: list[str]


class TunedModel(Protocol):
    """What categories are read from (`stylefinder.recommend.projection.Projection` has it)."""

    classifier: _Labels | None
    info: Mapping[str, object]

    def probabilities(self, vectors: np.ndarray) -> np.ndarray: ...


class Categorizer:
    """Categories from `tuned`'s classifier when it has one, else from `zero_shot` prompts
    when given, else from ImageNet probabilities."""

    def __init__(
        self, tuned: TunedModel | None, *, backbone: str, zero_shot: ZeroShot | None = None
    ) -> None:
        self.tuned = tuned if tuned is not None and tuned.classifier is not None else None
        self.backbone = backbone
        self.zero_shot = zero_shot if self.tuned is None else None

    @property
    def source(self) -> str:
        if self.tuned is not None:
            return "classifier"
        return "zero-shot" if self.zero_shot is not None else "imagenet"

    def categories(
        self, vectors: np.ndarray, imagenet: np.ndarray | None
    ) -> list[list[tuple[str, float]]]:
        """The top 3 categories and probabilities of each of `vectors` (backbone space), from
        the classifier or from `imagenet` (the head's probabilities, None without a head)."""
        if self.tuned is not None:
            labels = self.tuned.classifier.labels
            return top_categories(self.tuned.probabilities(vectors), labels)
        if self.zero_shot is not None:
            return self.zero_shot.categories(vectors)
        if imagenet is None:
            raise ValueError(f"{self.backbone} weights have no ImageNet head")
        return predict_garments(imagenet)

    def filter_for(self, recognition: Recognition) -> dict[str, list[str]]:
        """The filter keeping items of `recognition`'s category ({} when it is unknown): on
        `category_pred`, or on the label column the classifier was trained on."""
        if recognition.category == UNKNOWN:
            return {}
        column = CATEGORY_COLUMN
        if recognition.source == "classifier" and self.tuned is not None:
            column = str(self.tuned.info.get("label_column", CATEGORY_COLUMN))
        elif recognition.source == "zero-shot" and self.zero_shot is not None:
            column = self.zero_shot.column
        return {column: [recognition.category]}

    def new_item_metadata(self, image: Image.Image, vector: np.ndarray) -> dict[str, str]:
        """What indexing names for a new item: its `colours`, and its `category_pred` when
        the index has a classifier or zero-shot prompts."""
        found = {}
        colours = image_colours(image)
        if colours:
            found[COLOURS_COLUMN] = colours
        if self.tuned is not None or self.zero_shot is not None:
            found[CATEGORY_COLUMN] = self.categories(vector.reshape(1, -1), None)[0][0][0]
        return found


def recognized(
    categorizer: Categorizer,
    picture: Image.Image,
    vector: np.ndarray,
    imagenet: np.ndarray | None,
) -> Recognition:
    """The `Recognition` of one decoded picture from its vector and ImageNet probabilities."""
    categories = categorizer.categories(vector.reshape(1, -1), imagenet)[0]
    return Recognition(categories, categorizer.source, dominant_colours(picture))
