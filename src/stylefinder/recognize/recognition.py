"""What garment an image shows and in which colours, from the index's classifier or ImageNet.

The category comes from the classifier trained by `stylefinder tune` on the shop's own labels
when the index has one (`source="classifier"`), else from the backbone's ImageNet head mapped to
a small garment taxonomy (`source="imagenet"`, see docs/taxonomy.md). Colours are named from a
fixed palette, the plain background of product shots left out.

Example:
    >>> recognition = engine.recognize("upload.jpg")  # doctest: +SKIP
    >>> recognition.category, [c.name for c in recognition.colours]  # doctest: +SKIP
    ('Dress', ['navy', 'white'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
    source: str  # "classifier" or "imagenet"
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


def colour_value(colours: Sequence[ColourShare]) -> str:
    """The `colours` metadata value: names, most common first, comma-separated."""
    return ",".join(c.name for c in colours)


def image_colours(image: Image.Image) -> str | None:
    """The `colours` metadata value of a decoded image; None when it has no colour to name.

    Example:
        >>> image_colours(Image.new("RGB", (32, 32), (200, 30, 30)))
        'red'
    """
    try:
        return colour_value(dominant_colours(image)) or None
    except BadImageError:
        return None


@dataclass
class AnnotationSummary:
    """What `annotate_index` wrote."""

    categories: int = 0  # items given a category_pred
    colours: int = 0  # items given colours
    failed: list[tuple[str, str]] = field(default_factory=list)  # (item id, reason)
    source: str = ""  # where categories came from: classifier, imagenet or "" (none)


def annotate_index(
    index_dir: str | Path,
    *,
    imagenet: bool = False,
    progress: bool = False,
    batch: int = 64,
) -> AnnotationSummary:
    """Give every item `colours` metadata (when it has none yet) and a `category_pred`: from the
    index's classifier when it has one (from the stored vectors, cheap), else from the ImageNet
    fallback when `imagenet` (a pass of the model over the images of items that have none; the
    indexing pipeline names them as it embeds, so this is for items added otherwise).

    Example:
        >>> annotate_index("shop-index").colours  # doctest: +SKIP
        1000
    """
    from tqdm.auto import tqdm

    from stylefinder.catalog.images import load_image
    from stylefinder.recommend.engine import Engine

    engine = Engine.open(index_dir)
    snapshot, projection = engine.snapshot, engine.projection
    summary = AnnotationSummary()
    metadata = {item.id: dict(item.metadata) for item in snapshot.items}
    if projection is not None and projection.classifier is not None:
        labels = projection.classifier.labels
        by_row = snapshot.items.by_row()  # None: a removed item's empty row
        for start in range(0, snapshot.size, 8192):
            rows = np.asarray(snapshot.vectors[start : start + 8192])
            best = top_categories(projection.probabilities(rows), labels, top=1)
            for item, top in zip(by_row[start : start + 8192], best, strict=True):
                if item is not None:
                    metadata[item.id][CATEGORY_COLUMN] = top[0][0]
        summary.categories, summary.source = len(snapshot), "classifier"
    fallback = imagenet and summary.source == ""
    wanted = [COLOURS_COLUMN, CATEGORY_COLUMN] if fallback else [COLOURS_COLUMN]
    todo = [item for item in snapshot.items if any(c not in item.metadata for c in wanted)]
    with tqdm(total=len(todo), desc="recognize", unit="img", disable=not progress) as bar:
        for start in range(0, len(todo), batch):
            chunk, images = [], []
            for item in todo[start : start + batch]:
                try:
                    images.append(load_image(engine.image_path(item), draft_size=224))
                    chunk.append(item)
                except (BadImageError, OSError) as exc:
                    summary.failed.append((item.id, str(exc)))
            categories = imagenet_categories(engine.embedder, images) if fallback and images else []
            for n, (item, image) in enumerate(zip(chunk, images, strict=True)):
                found = metadata[item.id]  # what the item has (from its CSV too) is kept
                if COLOURS_COLUMN not in found:
                    found[COLOURS_COLUMN] = colour_value(dominant_colours(image))
                    summary.colours += 1
                if categories and CATEGORY_COLUMN not in found:
                    found[CATEGORY_COLUMN] = categories[n][0][0]
                    summary.categories, summary.source = summary.categories + 1, "imagenet"
            bar.update(len(todo[start : start + batch]))
    with engine.store.writer() as writer:  # items changed meanwhile by another writer are skipped
        hashes = {item.id: item.hash for item in snapshot.items}
        for item in writer.base.items:
            new = metadata.get(item.id)
            if new is not None and new != item.metadata and hashes[item.id] == item.hash:
                writer.put(item.replace(metadata=new), None)
    return summary
