"""The stylefinder web app: upload a photo (or pick an item), see the most similar catalog items.

Run it with `stylefinder app --index INDEX_DIR`; it reads the index directory from the
STYLEFINDER_INDEX environment variable. It talks to the library's `Engine` only, loaded once per
process with `st.cache_resource`. Uploads stay in memory: nothing is written to disk.
"""

from __future__ import annotations

import io
import os
import random
import time
from dataclasses import dataclass

import streamlit as st
from PIL import Image

from stylefinder import BadImageError, Engine, StylefinderError
from stylefinder.catalog.images import load_image
from stylefinder.recommend.engine import Recommendation

INDEX_ENV = "STYLEFINDER_INDEX"
MAX_UPLOAD_MB = float(os.environ.get("STYLEFINDER_MAX_UPLOAD_MB", "10"))
THUMBNAIL = 192
COLUMNS = 5
PAGE_SIZE = 20


@dataclass(frozen=True)
class Query:
    """What the user asked with: uploaded bytes, or a catalog item id."""

    label: str
    data: bytes | None = None
    item_id: str | None = None


@st.cache_resource(show_spinner="Loading the index and the model…")
def load_engine(index_dir: str) -> Engine:
    engine = Engine.open(index_dir)
    _ = engine.embedder  # load the model now, so the first upload answers quickly
    return engine


@st.cache_data(max_entries=4096, show_spinner=False)
def thumbnail(path: str, mtime_ns: int, size: int = THUMBNAIL) -> bytes:
    """A PNG of the image scaled to fit `size` pixels (small catalog images are scaled up)."""
    return _png(load_image(path), size)


def _png(image: Image.Image, size: int) -> bytes:
    scale = size / max(image.size)
    image = image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _image_of(engine: Engine, item_id: str) -> bytes | None:
    path = engine.image_path(engine.item(item_id))
    try:
        return thumbnail(path, os.stat(path).st_mtime_ns)
    except (OSError, BadImageError):
        return None


# -- state changes (widget callbacks) ------------------------------------------------------------


def _set_item_query(item_id: str) -> None:
    st.session_state.query = Query(label=f"catalog item {item_id}", item_id=item_id)
    st.session_state.page = "Find similar"


def _on_upload(key: str) -> None:
    uploaded = st.session_state.get(key)
    if uploaded is None:
        return
    if uploaded.size > MAX_UPLOAD_MB * 1_000_000:
        st.session_state.query = None
        st.session_state.upload_error = (
            f"{uploaded.name} is {uploaded.size / 1e6:.1f} MB; the limit is {MAX_UPLOAD_MB:g} MB."
        )
        return
    st.session_state.upload_error = None
    st.session_state.query = Query(label=uploaded.name, data=uploaded.getvalue())


def _on_item_id() -> None:
    item_id = st.session_state.item_id.strip()
    if item_id:
        _set_item_query(item_id)


def _on_random_item(engine: Engine) -> None:
    items = engine.snapshot.items
    if items:
        _set_item_query(random.choice(items).id)


# -- pages ---------------------------------------------------------------------------------------


def sidebar(engine: Engine) -> dict[str, list[str]]:
    """Page choice, number of results and metadata filters; returns the filters."""
    st.sidebar.title("stylefinder")
    st.sidebar.radio("Page", ["Find similar", "Catalog"], key="page")
    st.sidebar.slider("Results", 1, 20, 5, key="k")
    filters: dict[str, list[str]] = {}
    columns = engine.filter_columns()
    if columns:
        st.sidebar.subheader("Filters")
        st.sidebar.caption("Applied before ranking: you still get k results when they exist.")
    for column, values in columns.items():
        chosen = st.sidebar.multiselect(column, values, key=f"filter-{column}")
        if chosen:
            filters[column] = chosen
    return filters


def find_similar_page(engine: Engine, filters: dict[str, list[str]]) -> None:
    st.title("Find similar items")
    st.caption(
        f"Upload a photo of a garment, pick a catalog item or take a photo: the "
        f"{len(engine):,} catalog items are ranked by visual similarity."
    )
    upload_tab, item_tab, camera_tab = st.tabs(["Upload a photo", "Pick a catalog item", "Camera"])
    with upload_tab:
        st.file_uploader(
            "Photo (JPEG, PNG, WebP, GIF, BMP or TIFF)",
            type=["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"],
            key="upload",
            on_change=_on_upload,
            args=("upload",),
        )
    with item_tab:
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        left.text_input("Item id", key="item_id", on_change=_on_item_id, placeholder="item id")
        right.button("Random item", on_click=_on_random_item, args=(engine,))
    with camera_tab:
        st.camera_input("Take a photo", key="camera", on_change=_on_upload, args=("camera",))

    if st.session_state.get("upload_error"):
        st.error(st.session_state.upload_error)
    query: Query | None = st.session_state.get("query")
    if query is None:
        st.info("Choose a query above to see the most similar catalog items.")
        return
    k = int(st.session_state.get("k", 5))
    started = time.perf_counter()
    try:
        if query.item_id is not None:
            results = engine.similar(query.item_id, k=k, filters=filters or None)
            query_image = _image_of(engine, query.item_id)
        else:
            results = engine.recommend(query.data, k=k, filters=filters or None)
            query_image = _png(load_image(query.data), THUMBNAIL)
    except BadImageError as exc:
        st.error(
            f"**{query.label}** could not be used as a photo: {exc.reason}. "
            "Try a JPEG, PNG or WebP image of a garment."
        )
        return
    except StylefinderError as exc:
        st.error(str(exc))
        return
    elapsed_ms = (time.perf_counter() - started) * 1000

    query_col, results_col = st.columns([1, 6], gap="medium")
    with query_col:
        st.markdown("**Your query**")
        if query_image:
            st.image(query_image, width="stretch")
        st.caption(query.label)
    with results_col:
        shown = ", ".join(f"{c} in {v}" for c, v in filters.items())
        st.markdown(
            f"**{len(results)} most similar** · found in {elapsed_ms:.0f} ms"
            + (f" · only {shown}" if filters else "")
        )
        if not results:
            st.warning("No catalog item passes these filters.")
        result_grid(engine, results)


def result_grid(engine: Engine, results: list[Recommendation]) -> None:
    cards = [(r.id, r.metadata, f"similarity {r.score:.3f}") for r in results]
    card_grid(engine, cards, container="results", button="More like this", button_key="more")


def card_grid(
    engine: Engine,
    cards: list[tuple[str, dict[str, str], str | None]],
    *,
    container: str,
    button: str,
    button_key: str,
) -> None:
    """Items as bordered cards, COLUMNS to a row: image, id, a note, metadata and a button
    that makes the item the query."""
    with st.container(key=container):
        for start in range(0, len(cards), COLUMNS):
            cells = st.columns(COLUMNS)
            for cell, (item_id, metadata, note) in zip(
                cells, cards[start : start + COLUMNS], strict=False
            ):
                with cell, st.container(border=True):
                    image = _image_of(engine, item_id)
                    if image:
                        st.image(image, width="stretch")
                    st.caption(f"**{item_id}**")
                    if note:
                        st.caption(note)
                    for name, value in metadata.items():
                        st.caption(f"{name}: {value}")
                    st.button(
                        button,
                        key=f"{button_key}-{item_id}",
                        on_click=_set_item_query,
                        args=(item_id,),
                    )


def catalog_page(engine: Engine, filters: dict[str, list[str]]) -> None:
    st.title("Catalog")
    info = engine.info()
    st.markdown(
        f"**{info.items:,} items** · backbone **{info.backbone}** ({info.dim}-d, "
        f"{info.pooling} pooling) · created {_when(info.created_at)} · "
        f"last updated {_when(info.updated_at)}"
    )
    _, total = engine.browse(limit=0, filters=filters or None)
    pages = max(1, -(-total // PAGE_SIZE))
    page = st.columns([1, 4])[0].number_input(f"Page (of {pages})", 1, pages, 1, key="catalog_page")
    items, _ = engine.browse(
        offset=(int(page) - 1) * PAGE_SIZE, limit=PAGE_SIZE, filters=filters or None
    )
    st.caption(f"{total:,} items" + (f" match {filters}" if filters else ""))
    cards = [(item.id, item.metadata, None) for item in items]
    card_grid(engine, cards, container="catalog", button="Find similar", button_key="find")


def _when(timestamp: str) -> str:
    return timestamp.replace("T", " ")[:16] + " UTC"


def main() -> None:
    st.set_page_config(page_title="stylefinder", page_icon="👗", layout="wide")
    index_dir = os.environ.get(INDEX_ENV)
    if not index_dir:
        st.error("No index given: start the app with `stylefinder app --index INDEX_DIR`.")
        st.stop()
    try:
        engine = load_engine(index_dir)
    except StylefinderError as exc:
        st.error(str(exc))
        st.stop()
    engine.reload()  # pick up catalog changes committed since the last run
    filters = sidebar(engine)
    if st.session_state.get("page") == "Catalog":
        catalog_page(engine, filters)
    else:
        find_similar_page(engine, filters)


main()
