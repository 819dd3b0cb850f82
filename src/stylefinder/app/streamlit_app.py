"""The stylefinder web app: upload a photo (or pick an item), see the most similar catalog items.

Run it with `stylefinder app --index INDEX_DIR`; it reads the index directory from the
STYLEFINDER_INDEX environment variable. It talks to the library's `Engine` only, loaded once per
process with `st.cache_resource`. Uploads stay in memory: nothing is written to disk.

The query's recognized category and colours show next to it, with a "Same category only" toggle.
Each browser session is an anonymous shopper (`web-` + random hex): the like and dislike buttons
on every card store events, and the "For you" section ranks items from them.

Cards and filters follow the index's display settings (`recommend.display`): the title, price and
link columns, the facets offered as filters (with value counts) and the hidden columns. Every
text from the catalog, the shopper or the model goes through `markup.plain` (or `html_text`), so
that a metadata value is never Markdown or HTML: no live links, no remote images.
"""

from __future__ import annotations

import io
import os
import random
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import streamlit as st
from PIL import Image
from streamlit.delta_generator import DeltaGenerator

from stylefinder.app import upload_ceiling_mb
from stylefinder.app.markup import MAX_CHARS, category_markdown, colour_chips, plain
from stylefinder.catalog.images import load_image
from stylefinder.engine import Engine, Recommendation
from stylefinder.errors import BadImageError, StylefinderError, UnknownColumnError
from stylefinder.recognize.recognition import Recognition
from stylefinder.recommend.display import DisplaySettings, display_fields, facets, read_display

INDEX_ENV = "STYLEFINDER_INDEX"
MAX_UPLOAD_MB = float(os.environ.get("STYLEFINDER_MAX_UPLOAD_MB", "10"))
THUMBNAIL = 192
COLUMNS = 5
PAGE_SIZE = 20
FOR_YOU = 5  # items in the "For you" section
# Streamlit's uploader states its own cap ("40MB per file"), which is above the app's limit so
# that files over the limit reach the app's message; the label states the limit instead.
HIDE_UPLOAD_CAP = (
    "<style>.st-key-upload [data-testid='stFileUploaderDropzoneInstructions']"
    "{display: none}</style>"
)
_COUNTED = re.compile(r" \([\d,]+\)$")  # an option's count, as `_with_count` shows it
SOURCES = {
    "classifier": "by the shop's own classifier",
    "imagenet": "by the ImageNet fallback (no classifier tuned on the shop's labels)",
}


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
    snapshot = _engine.snapshot
    return facets(snapshot.items, read_display(snapshot.state))


def _image_key(engine: Engine, query: Query) -> tuple[str, int, bytes | str, int]:
    """The cache key of the query's image: index, generation, then bytes or (path, mtime)."""
    where = (str(engine.store.directory), engine.snapshot.generation)
    if query.data is not None:
        return (*where, query.data, 0)
    path = engine.image_path(engine.item(query.item_id))
    return (*where, path, os.stat(path).st_mtime_ns)


def _combine(
    filters: dict[str, list[str]], extra: dict[str, list[str]]
) -> dict[str, list[str]] | None:
    """Both filters at once (a column in both keeps the values in both); None when no item
    can pass."""
    combined = dict(filters)
    for column, values in extra.items():
        kept = [v for v in combined.get(column, values) if v in values]
        if not kept:
            return None
        combined[column] = kept
    return combined


def _upload_ceiling() -> int:
    """The largest upload (MB) Streamlit passes to the app: above the limit, so that a file over
    the limit reaches `_on_upload` and its message (never above the server's own cap)."""
    return min(upload_ceiling_mb(MAX_UPLOAD_MB), int(st.get_option("server.maxUploadSize")))


def _user_id() -> str:
    """This browser session's anonymous shopper id (`web-` + random hex), made on first use."""
    if "user_id" not in st.session_state:
        st.session_state.user_id = f"web-{secrets.token_hex(8)}"
    return st.session_state.user_id


def _opinions(engine: Engine) -> dict[str, str]:
    """The session shopper's latest like or dislike of each item."""
    events = engine.events.events(_user_id())  # oldest first: later events overwrite
    return {e.item_id: e.kind for e in events if e.kind in ("like", "dislike")}


# -- state changes (widget callbacks) ------------------------------------------------------------


def _set_item_query(item_id: str) -> None:
    st.session_state.upload_error = None  # a new query: an earlier upload's error is old news
    st.session_state.query = Query(label=f"catalog item {item_id}", item_id=item_id)
    st.session_state.page = "Find similar"


def _on_upload(key: str) -> None:
    """A new upload (or photo) becomes the query; one over the size limit gets a message
    naming its size and the limit instead. Streamlit passes files up to `upload_ceiling_mb`
    to the app, so that files over the limit reach this check."""
    uploaded = st.session_state.get(key)
    st.session_state.upload_error = None
    if uploaded is None:  # the file was removed from the uploader
        return
    if uploaded.size > MAX_UPLOAD_MB * 1_000_000:
        st.session_state.query = None
        st.session_state.upload_error = too_large_message(uploaded.name, uploaded.size)
        return
    st.session_state.query = Query(label=uploaded.name, data=uploaded.getvalue())


def too_large_message(name: str, size: int) -> str:
    """What a shopper reads when an upload is over the limit, e.g. "photo.jpg is 12.3 MB; the
    limit is 10 MB." """
    return (
        f"{name} is {size / 1e6:.1f} MB; the limit is {MAX_UPLOAD_MB:g} MB. "
        "Choose a smaller photo, or save it as a JPEG."
    )


def _on_item_id() -> None:
    item_id = st.session_state.item_id.strip()
    if item_id:
        _set_item_query(item_id)


def _on_random_item(engine: Engine) -> None:
    items = engine.snapshot.items
    if items:  # a random row that holds an item
        _set_item_query(items[int(random.choice(items.rows()))].id)


def _on_same_category() -> None:
    st.session_state.same_category = st.session_state.same_category_toggle


def _on_feedback(engine: Engine, item_id: str, kind: str, current: str | None) -> None:
    """Store a like or dislike of the session shopper (nothing when it is already their
    latest opinion of the item)."""
    if kind == current:
        return
    try:
        engine.record_event(_user_id(), item_id, kind)
    except StylefinderError as exc:  # the item went from the index since the page was drawn
        st.session_state.feedback_error = str(exc)


def _on_forget(engine: Engine) -> None:
    removed = engine.events.delete_user(_user_id())["events"]
    st.toast(f"Forgot this session's {_count(removed, 'event')}.", icon=":material/check:")


# -- pages ---------------------------------------------------------------------------------------


def sidebar(engine: Engine) -> dict[str, list[str]]:
    """Page choice, number of results and metadata filters; returns the filters."""
    st.sidebar.title("stylefinder")
    st.sidebar.radio("Page", ["Find similar", "Catalog"], key="page")
    st.sidebar.slider("Results", 1, 20, 5, key="k")
    filters: dict[str, list[str]] = {}
    options = facet_options(engine, str(engine.store.directory), engine.snapshot.generation)
    if options:
        st.sidebar.subheader("Filters")
        st.sidebar.caption("Applied before ranking: you still get k results when they exist.")
    for column, values in options.items():
        counts = dict(values)
        chosen = st.sidebar.multiselect(
            plain(column),
            list(counts),
            format_func=lambda value, counts=counts: _with_count(value, counts),
            key=f"filter-{column}",
        )
        if chosen := _selected(chosen, counts):
            filters[column] = chosen
    return filters


def _with_count(value: str, counts: dict[str, int]) -> str:
    """A facet's option as shown: the value and how many items hold it, e.g. "Dresses (12)"."""
    return f"{value} ({counts.get(value, 0):,})"


def _selected(chosen: list[str], counts: dict[str, int]) -> list[str]:
    """The chosen values that are options; a browser may still send an option as shown before
    a catalog update changed its count ("Bag (100)"): that one counts as its value."""
    kept = []
    for value in chosen:
        value = value if value in counts else _COUNTED.sub("", value)
        if value in counts and value not in kept:
            kept.append(value)
    return kept


def describe_filters(filters: Iterable[tuple[str, list[str]]]) -> str:
    """Filters as escaped Markdown, e.g. "category in Bag, Dress; colours in navy"."""
    return plain("; ".join(f"{column} in {', '.join(values)}" for column, values in filters))


def find_similar_page(engine: Engine, filters: dict[str, list[str]]) -> None:
    st.title("Find similar items")
    st.caption(
        f"Upload a photo of a garment, pick a catalog item or take a photo: the "
        f"{len(engine):,} catalog items are ranked by visual similarity."
    )
    upload_tab, item_tab, camera_tab = st.tabs(["Upload a photo", "Pick a catalog item", "Camera"])
    with upload_tab:
        st.html(HIDE_UPLOAD_CAP)
        st.file_uploader(
            f"Photo (JPEG, PNG, WebP, GIF, BMP or TIFF; up to {MAX_UPLOAD_MB:g} MB)",
            type=["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"],
            key="upload",
            on_change=_on_upload,
            args=("upload",),
            max_upload_size=_upload_ceiling(),
        )
    with item_tab:
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        left.text_input("Item id", key="item_id", on_change=_on_item_id, placeholder="item id")
        right.button("Random item", on_click=_on_random_item, args=(engine,))
    with camera_tab:
        st.camera_input("Take a photo", key="camera", on_change=_on_upload, args=("camera",))

    if st.session_state.get("upload_error"):
        st.error(plain(st.session_state.upload_error))
    query: Query | None = st.session_state.get("query")
    opinions = _opinions(engine)
    panel = None
    if query is None:
        st.info("Choose a query above to see the most similar catalog items.")
    else:
        panel = query_results(engine, query, filters, opinions)
    for_you_section(engine, filters, opinions)
    if panel is not None:  # last: the rest of the page need not wait for recognition
        with panel:
            recognition_panel(engine, query)


def query_results(
    engine: Engine, query: Query, filters: dict[str, list[str]], opinions: dict[str, str]
) -> DeltaGenerator | None:
    """The query next to its most similar items; returns the empty container under the query
    for its category and colours (None after an error)."""
    k = int(st.session_state.get("k", 5))
    try:
        same: dict[str, list[str]] = {}
        if st.session_state.get("same_category"):
            same, matching = same_category(engine, *_image_key(engine, query))
            same = same if matching else {}  # no item has the category: nothing to keep
        wanted = _combine(filters, same)
        started = time.perf_counter()
        if query.item_id is not None:
            query_image = _image_of(engine, query.item_id)
            results = [] if wanted is None else engine.similar(query.item_id, k=k, filters=wanted)
        else:
            query_image = _png(load_image(query.data), THUMBNAIL)
            results = [] if wanted is None else engine.recommend(query.data, k=k, filters=wanted)
    except BadImageError as exc:
        st.error(
            f"**{plain(query.label)}** could not be used as a photo: {plain(exc.reason)}. "
            "Try a JPEG, PNG or WebP image of a garment."
        )
        return None
    except (OSError, StylefinderError) as exc:
        st.error(plain(exc))
        return None
    elapsed_ms = (time.perf_counter() - started) * 1000

    query_col, results_col = st.columns([1, 5], gap="medium")
    with query_col:
        st.markdown("**Your query**")
        if query_image:
            st.image(query_image, width="stretch")
        st.caption(plain(query.label))
        panel = st.container(key="recognition")
    with results_col:
        applied = [*filters.items(), *same.items()] if wanted is None else wanted.items()
        shown = describe_filters(applied)
        st.markdown(
            f"**{len(results)} most similar** · found in {elapsed_ms:.0f} ms"
            + (f" · only {shown}" if shown else "")
        )
        if not results:
            st.warning("No catalog item passes these filters.")
        result_grid(engine, results, opinions)
    return panel


def recognition_panel(engine: Engine, query: Query) -> None:
    """What the query shows: the top 3 categories with their probabilities and where they come
    from, colour chips, and the "Same category only" toggle."""
    with st.spinner("Recognizing…"):
        try:
            key = _image_key(engine, query)
            recognition = recognize(engine, *key)
            same, matching = same_category(engine, *key)
        except (OSError, StylefinderError) as exc:
            st.caption(f"Category and colours unavailable: {plain(exc)}")
            return
        st.markdown(category_markdown(recognition))
        st.caption(SOURCES.get(recognition.source, recognition.source))
        if recognition.colours:
            st.markdown(colour_chips(recognition), unsafe_allow_html=True)
        toggle = "Same category only"
        if not same:
            why = "No garment category was recognized with confidence."
            st.toggle(toggle, key="same_category_unavailable", disabled=True, help=why)
            return
        column, values = next(iter(same.items()))
        value = plain(values[0])
        column = plain(column)
        if not matching:
            st.toggle(toggle, key="same_category_unavailable", disabled=True)
            st.caption(
                f"No catalog item has {column} = {value}: index with `--imagenet-categories` "
                "or tune a classifier (`stylefinder tune`)."
            )
            return
        # The widget's value lives in "same_category" too, kept while the toggle is not shown.
        st.session_state.same_category_toggle = st.session_state.get("same_category", False)
        st.toggle(
            toggle,
            key="same_category_toggle",
            help=f"Only items with {column} = {value}",
            on_change=_on_same_category,
        )


def for_you_section(
    engine: Engine, filters: dict[str, list[str]], opinions: dict[str, str]
) -> None:
    """Items for the session shopper from their likes and dislikes; popular ones before any."""
    st.divider()
    about, picks_col = st.columns([1, 5], gap="medium")  # aligned with the query and results
    with about:
        st.subheader("For you")
        likes = sum(kind == "like" for kind in opinions.values())
        if likes:
            dislikes = len(opinions) - likes
            note = f"From your {_count(likes, 'like')}"
            note += f" and {_count(dislikes, 'dislike')}." if dislikes else "."
        else:
            note = "Popular, varied picks: like or dislike items to make this list yours."
        st.caption(note + (" Sidebar filters apply." if filters else ""))
        st.button(
            "Forget me",
            key="forget",
            type="tertiary",
            icon=":material/person_remove:",
            help="Erase this session's likes and dislikes",
            disabled=not opinions,
            on_click=_on_forget,
            args=(engine,),
        )
    with picks_col:
        try:
            picks = engine.recommend_for_user(_user_id(), k=FOR_YOU, filters=filters or None)
        except StylefinderError as exc:
            st.error(plain(exc))
            return
        cards = [(r.id, r.metadata, None) for r in picks]
        card_grid(
            engine,
            cards,
            container="for-you",
            button="More like this",
            button_key="more-for-you",
            opinions=opinions,
        )


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def result_grid(
    engine: Engine, results: list[Recommendation], opinions: dict[str, str] | None = None
) -> None:
    cards = [(r.id, r.metadata, f"similarity {r.score:.3f}") for r in results]
    card_grid(
        engine,
        cards,
        container="results",
        button="More like this",
        button_key="more",
        opinions=opinions,
    )


def card_grid(
    engine: Engine,
    cards: list[tuple[str, dict[str, str], str | None]],
    *,
    container: str,
    button: str,
    button_key: str,
    opinions: dict[str, str] | None = None,
) -> None:
    """Items as bordered cards, COLUMNS to a row: image, title (or id), price, a note, the visible
    details, a shop link, a button that makes the item the query and, given the shopper's
    `opinions`, like and dislike buttons. What shows follows the index's display settings."""
    settings = read_display(engine.snapshot.state)
    with st.container(key=container):
        for start in range(0, len(cards), COLUMNS):
            cells = st.columns(COLUMNS)
            for cell, (item_id, metadata, note) in zip(
                cells, cards[start : start + COLUMNS], strict=False
            ):
                with cell, st.container(border=True):
                    card(engine, item_id, metadata, note, settings, where=container)
                    with st.container(horizontal=True, gap="small"):
                        st.button(
                            button,
                            key=f"{button_key}-{item_id}",
                            on_click=_set_item_query,
                            args=(item_id,),
                        )
                        if opinions is not None:
                            feedback_buttons(engine, item_id, opinions.get(item_id), container)


def card(
    engine: Engine,
    item_id: str,
    metadata: dict[str, object],
    note: str | None,
    settings: DisplaySettings,
    *,
    where: str,
) -> None:
    """One card's image and text, every catalog text escaped (see `markup.plain`)."""
    fields = display_fields(metadata, settings)
    image = _image_of(engine, item_id)
    if image:
        st.image(image, width="stretch")
    st.markdown(f"**{plain(fields['title'] or item_id, MAX_CHARS)}**")
    if fields["price"]:
        st.markdown(plain(fields["price"], MAX_CHARS))
    if note:
        st.caption(note)
    for name, value in fields["details"].items():
        st.caption(f"{plain(name, MAX_CHARS)}: {plain(value, MAX_CHARS)}")
    if fields["link"]:
        st.link_button(
            "View in the shop",
            fields["link"],
            key=f"link-{where}-{item_id}",
            type="tertiary",
            icon=":material/open_in_new:",
        )


def feedback_buttons(engine: Engine, item_id: str, current: str | None, where: str) -> None:
    """Like and dislike buttons for one item; the shopper's latest opinion of it is filled."""
    for kind, icon, help_text in (
        ("like", ":material/thumb_up:", "Like: more like this in For you"),
        ("dislike", ":material/thumb_down:", "Dislike: never this, less like it in For you"),
    ):
        st.button(
            "",
            icon=icon,
            key=f"{kind}-{where}-{item_id}",
            help=help_text,
            type="primary" if current == kind else "tertiary",
            on_click=_on_feedback,
            args=(engine, item_id, kind, current),
        )


def catalog_page(engine: Engine, filters: dict[str, list[str]]) -> None:
    st.title("Catalog")
    # the header and snapshot, not engine.info(): that also describes every column and counts
    # shoppers and disk space, too much for each rerun of the page
    header, snapshot = engine.store.header, engine.snapshot
    updated_at = snapshot.state.get("updated_at", header.created_at)
    st.markdown(
        f"**{len(snapshot):,} items** · backbone **{header.backbone}** ({header.dim}-d, "
        f"{header.pooling} pooling) · created {_when(header.created_at)} · "
        f"last updated {_when(updated_at)}"
    )
    _, total = engine.browse(limit=0, filters=filters or None)
    pages = max(1, -(-total // PAGE_SIZE))
    page = st.columns([1, 4])[0].number_input(f"Page (of {pages})", 1, pages, 1, key="catalog_page")
    items, _ = engine.browse(
        offset=(int(page) - 1) * PAGE_SIZE, limit=PAGE_SIZE, filters=filters or None
    )
    st.caption(
        f"{total:,} items" + (f" match {describe_filters(filters.items())}" if filters else "")
    )
    cards = [(item.id, item.metadata, None) for item in items]
    card_grid(
        engine,
        cards,
        container="catalog",
        button="Find similar",
        button_key="find",
        opinions=_opinions(engine),
    )


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
        st.error(plain(exc))
        st.stop()
    engine.reload()  # pick up catalog changes committed since the last run
    filters = sidebar(engine)
    if st.session_state.get("feedback_error"):
        st.error(plain(st.session_state.pop("feedback_error")))
    if st.session_state.get("page") == "Catalog":
        catalog_page(engine, filters)
    else:
        find_similar_page(engine, filters)


main()
