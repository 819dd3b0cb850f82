"""Zero-shot categories for a CLIP-family backbone: category names as text prompts, an image's
category the prompt its vector is nearest to.

The names are the shop's own (the values of its `category` column) when it has them, else
the garment taxonomy's; "coat/jacket" reads "a photo of a coat or jacket".

Example:
    >>> prompt("coat/jacket")
    'a photo of a coat or jacket'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from stylefinder.recognize.recognition import CATEGORY_COLUMN, top_categories
from stylefinder.recognize.taxonomy import TAXONOMY

SHOP_CATEGORY_COLUMN = "category"  # the shop's own category names, where its CSV has them
PROMPT = "a photo of a {}"


def prompt(label: str) -> str:
    """The text prompt of a category name.

    Example:
        >>> prompt("Dress")
        'a photo of a dress'
    """
    words = " or ".join(part.strip() for part in label.replace("_", " ").split("/"))
    return PROMPT.format(words.casefold())


@dataclass(frozen=True)
class ZeroShot:
    """Category `labels`, their prompts' unit vectors (C, D), the model's `scale` (cosine ->
    logit), and the metadata `column` the labels are values of (for filters).

    Example:
        >>> zero = ZeroShot(["a", "b"], np.eye(2, dtype=np.float32), 100.0, "category_pred")
        >>> zero.categories(np.array([[0.0, 1.0]], np.float32))[0][0]
        ('b', 1.0)
    """

    labels: list[str]
    vectors: np.ndarray
    scale: float
    column: str

    @classmethod
    def from_names(
        cls,
        encode: Callable[[Sequence[str]], np.ndarray],
        scale: float,
        shop_names: Sequence[str] = (),
    ) -> ZeroShot:
        """Prompts of `shop_names` (two or more) on the shop's `category` column, else of the
        garment taxonomy on `category_pred`, embedded by `encode` (texts -> unit vectors)."""
        names = sorted({str(name) for name in shop_names if str(name).strip()})
        labels, column = (names, SHOP_CATEGORY_COLUMN)
        if len(names) < 2:
            labels, column = list(TAXONOMY), CATEGORY_COLUMN
        vectors = np.asarray(encode([prompt(label) for label in labels]), np.float32)
        return cls(labels, vectors, float(scale), column)

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """Softmax over the labels of the scaled cosines of image `vectors` (N, D) -> (N, C)."""
        logits = self.scale * (np.asarray(vectors, np.float32) @ self.vectors.T)
        logits -= logits.max(axis=1, keepdims=True)
        odds = np.exp(logits)
        return odds / odds.sum(axis=1, keepdims=True)

    def categories(self, vectors: np.ndarray, top: int = 3) -> list[list[tuple[str, float]]]:
        """The `top` labels and probabilities of each of image `vectors`."""
        return top_categories(self.probabilities(vectors), self.labels, top=top)
