"""Annotating an index's items: colours, and a predicted category, for items that lack them.

Example:
    >>> annotate_index("shop-index").colours  # doctest: +SKIP
    1000
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from stylefinder.catalog.images import load_image
from stylefinder.engine import Engine
from stylefinder.errors import BadImageError
from stylefinder.index.store import IndexStore
from stylefinder.recognize.colours import dominant_colours
from stylefinder.recognize.recognition import (
    CATEGORY_COLUMN,
    COLOURS_COLUMN,
    MULTI_FROM,
    colour_value,
    imagenet_categories,
    top_categories,
)


@dataclass
class AnnotationSummary:
    """What `annotate_index` wrote."""

    categories: int = 0  # items given a category_pred
    colours: int = 0  # items given colours
    failed: list[tuple[str, str]] = field(default_factory=list)  # (item id, reason)
    source: str = ""  # where categories came from: classifier, zero-shot, imagenet, "" (none)


def annotate_index(
    index_dir: str | Path,
    *,
    imagenet: bool = False,
    progress: bool = False,
    batch: int = 64,
) -> AnnotationSummary:
    """Give every item `colours` metadata (when it has none yet) and a `category_pred`: from the
    index's classifier when it has one (from the stored vectors, cheap), else when `imagenet`
    to items that have none: from a CLIP-family backbone's zero-shot prompts (from the stored
    vectors too), or from the ImageNet fallback (a pass of the model over their images; the
    indexing pipeline names them as it embeds, so this is for items added otherwise).

    Example:
        >>> annotate_index("shop-index").colours  # doctest: +SKIP
        1000
    """
    engine = Engine.open(index_dir)
    projection = engine.projection
    items = _items(engine)
    summary = AnnotationSummary()
    metadata = {item.id: dict(item.metadata) for item in items}
    if projection is not None and projection.classifier is not None:
        labels = projection.classifier.labels
        for block, vectors in _vector_blocks(engine, items):
            best = top_categories(projection.probabilities(vectors), labels, top=1)
            for item, top in zip(block, best, strict=True):
                metadata[item.id][CATEGORY_COLUMN] = top[0][0]
        summary.categories, summary.source = len(items), "classifier"
    elif imagenet and engine.embeds_text:  # zero-shot prompts, from the stored vectors
        zero_shot = engine.zero_shot()
        unnamed = [item for item in items if CATEGORY_COLUMN not in item.metadata]
        for block, vectors in _vector_blocks(engine, unnamed):
            for item, top in zip(block, zero_shot.categories(vectors, top=1), strict=True):
                metadata[item.id][CATEGORY_COLUMN] = top[0][0]
        summary.categories, summary.source = len(unnamed), "zero-shot"
    fallback = imagenet and summary.source == ""
    wanted = [COLOURS_COLUMN, CATEGORY_COLUMN] if fallback else [COLOURS_COLUMN]
    todo = [item for item in items if any(c not in item.metadata for c in wanted)]
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
                    found[COLOURS_COLUMN] = colour_value(
                        dominant_colours(image, max_colours=MULTI_FROM)
                    )
                    summary.colours += 1
                if categories and CATEGORY_COLUMN not in found:
                    found[CATEGORY_COLUMN] = categories[n][0][0]
                    summary.categories, summary.source = summary.categories + 1, "imagenet"
            bar.update(len(todo[start : start + batch]))
    hashes = {item.id: item.hash for item in items}
    with engine.store.writer() as writer:  # items changed meanwhile by another writer are skipped
        for item in _items(engine, fresh=True):
            new = metadata.get(item.id)
            if new is not None and new != item.metadata and hashes[item.id] == item.hash:
                writer.put(item.replace(metadata=new), None)
    return summary


def _items(engine: Engine, *, fresh: bool = False) -> list:
    """The items of the engine's index (`fresh`: as committed now, not as the engine read
    them), in the order `_vector_blocks` reads their vectors."""
    store = engine.store
    if isinstance(store, IndexStore):
        snapshot = store.snapshot() if fresh else engine.snapshot
        return [item for item in snapshot.items.by_row() if item is not None]
    return store.items(store.ids())


def _vector_blocks(engine: Engine, items: list, size: int = 8192):
    """(items, their stored vectors) a block at a time."""
    store = engine.store
    if isinstance(store, IndexStore):
        snapshot = engine.snapshot
        for start in range(0, len(items), size):
            block = items[start : start + size]
            rows = np.array([snapshot.row_of[item.id] for item in block], np.int64)
            yield block, np.asarray(snapshot.vectors[rows])
        return
    for start in range(0, len(items), size):
        block = items[start : start + size]
        yield block, store.vectors_of([item.id for item in block])
