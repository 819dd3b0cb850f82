"""What the web app computes once and keeps: the engine (once per process), thumbnails, and
per index generation the query's recognition, its same-category filter and the facets.

Cached functions take the engine as `_engine` (Streamlit does not hash it) and the catalog
(`catalog_key`) and generation as keys, so that a catalog update computes them again.
"""

from __future__ import annotations

import io
import os

import streamlit as st
from PIL import Image

from stylefinder.app.session import Query
from stylefinder.catalog.images import load_image
from stylefinder.catalog.remote import is_remote
from stylefinder.engine import Engine
from stylefinder.errors import BadImageError, UnknownColumnError
from stylefinder.recognize.colours import warm_up
from stylefinder.recognize.recognition import Recognition
from stylefinder.recommend.display import facets, read_display

THUMBNAIL = 192


@st.cache_resource(show_spinner="Loading the index and the model…")
def load_engine(index_dir: str) -> Engine:
    """The engine of `index_dir` with its model loaded, once per process."""
    engine = Engine.open(index_dir)
    _ = engine.embedder  # load the model now, so the first upload answers quickly
    warm_up()  # and the colour kernels (compiled once per install)
    return engine


@st.cache_data(max_entries=4096, show_spinner=False)
def thumbnail(path: str, mtime_ns: int, size: int = THUMBNAIL) -> bytes:
    """A PNG of the image scaled to fit `size` pixels (small catalog images are scaled up)."""
    return png(load_image(path), size)


def png(image: Image.Image, size: int) -> bytes:
    """A PNG of `image` scaled to fit `size` pixels."""
    scale = size / max(image.size)
    image = image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@st.cache_data(max_entries=1024, show_spinner=False)
def stored_thumbnail(data: bytes, size: int = THUMBNAIL) -> bytes:
    """A PNG of an image kept in the database, scaled to fit `size` pixels."""
    return png(load_image(data), size)


def image_of(engine: Engine, item_id: str) -> bytes | None:
    """The thumbnail of a catalog item's image; None when it cannot be read."""
    item = engine.item(item_id)
    try:
        if (data := engine.view.stored_image(item)) is not None:  # kept in the database
            return stored_thumbnail(data)
        path = engine.image_path(item)
        return thumbnail(path, _changed_at(path, item))
    except (OSError, BadImageError):
        return None


def catalog_key(engine: Engine) -> str:
    """Which catalog the engine reads: its directory, or its database and schema."""
    directory = getattr(engine.store, "directory", None)
    if directory is not None:
        return str(directory)
    return engine.store.target.described


@st.cache_data(max_entries=64, show_spinner=False)
def recognize(
    _engine: Engine, index: str, generation: int, image: bytes | str, mtime_ns: int
) -> Recognition:
    """The category and colours of a query image, once per image and index generation."""
    return _engine.recognize(image)


@st.cache_data(max_entries=64, show_spinner=False)
def same_category(
    _engine: Engine, index: str, generation: int, image: bytes | str, mtime_ns: int
) -> tuple[dict[str, list[str]], int]:
    """The filter keeping the image's recognized category, and how many catalog items pass it."""
    filters = _engine.category_filter(recognize(_engine, index, generation, image, mtime_ns))
    try:
        return filters, (_engine.browse(limit=0, filters=filters)[1] if filters else 0)
    except UnknownColumnError:  # no item has the category column (never annotated)
        return filters, 0


@st.cache_data(max_entries=8, show_spinner=False)
def facet_options(_engine: Engine, index: str, generation: int) -> dict[str, list[tuple[str, int]]]:
    """The sidebar's filters: the facet columns of the display settings, each with its values
    and how many items hold them, once per index generation."""
    view = _engine.view
    return facets(view.items, read_display(view.state))


def image_key(engine: Engine, query: Query) -> tuple[str, int, bytes | str, int]:
    """The cache key of the query's image: catalog, generation, then bytes or (path, mtime)."""
    where = (catalog_key(engine), engine.view.generation)
    if query.data is not None:
        return (*where, query.data, 0)
    item = engine.item(query.item_id)
    if (data := engine.view.stored_image(item)) is not None:  # kept in the database
        return (*where, data, 0)
    path = engine.image_path(item)
    return (*where, path, _changed_at(path, item))


def _changed_at(path: str, item) -> int:
    """When the image at `path` last changed (a cache key): its file's mtime, or for one on
    object storage what the catalog recorded (`is_remote`)."""
    return item.mtime_ns if is_remote(path) else os.stat(path).st_mtime_ns
