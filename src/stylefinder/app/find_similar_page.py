"""The "Find similar" page: a search box for words; the query (an upload, a catalog item or a
camera photo) next to its most similar items (those matching the words first), its recognized
category and colours with the "Same category only" toggle; the shopper's "For you" section."""

from __future__ import annotations

import time

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from stylefinder.app.cache import THUMBNAIL, image_key, image_of, png, recognize, same_category
from stylefinder.app.cards import card_grid, result_grid
from stylefinder.app.markup import category_markdown, colour_chips, plain
from stylefinder.app.session import (
    Query,
    max_upload_mb,
    on_forget,
    on_item_id,
    on_random_item,
    on_same_category,
    on_upload,
    plural,
    shopper_id,
    shopper_opinions,
    upload_ceiling,
)
from stylefinder.app.sidebar import describe_filters
from stylefinder.catalog.images import load_image
from stylefinder.engine import Engine
from stylefinder.errors import BadImageError, StylefinderError

FOR_YOU = 5  # items in the "For you" section
# Streamlit's uploader states its own cap ("40MB per file"), which is above the app's limit so
# that files over the limit reach the app's message; the label states the limit instead.
HIDE_UPLOAD_CAP = (
    "<style>.st-key-upload [data-testid='stFileUploaderDropzoneInstructions']"
    "{display: none}</style>"
)
SOURCES = {
    "classifier": "by the shop's own classifier",
    "zero-shot": "by the model's zero-shot prompts (no classifier tuned on the shop's labels)",
    "imagenet": "by the ImageNet fallback (no classifier tuned on the shop's labels)",
}


def find_similar_page(engine: Engine, filters: dict[str, list[str]]) -> None:
    """The query tabs, the query's results and recognition, then "For you"."""
    st.title("Find similar items")
    st.caption(
        f"Search by words, upload a photo of a garment, pick a catalog item or take a photo: "
        f"the {len(engine):,} catalog items are ranked by their words and their look."
    )
    st.text_input(
        "Search by words",
        key="words",
        placeholder='"navy linen shirt", or with a photo below: "red"',
        help="Words match the items' titles, categories, colours and other details; with a "
        "photo or an item too, items that look like it and match the words come first.",
    )
    upload_tab, item_tab, camera_tab = st.tabs(["Upload a photo", "Pick a catalog item", "Camera"])
    with upload_tab:
        st.html(HIDE_UPLOAD_CAP)
        st.file_uploader(
            f"Photo (JPEG, PNG, WebP, GIF, BMP or TIFF; up to {max_upload_mb():g} MB)",
            type=["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"],
            key="upload",
            on_change=on_upload,
            args=("upload",),
            max_upload_size=upload_ceiling(),
        )
    with item_tab:
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        left.text_input("Item id", key="item_id", on_change=on_item_id, placeholder="item id")
        right.button("Random item", on_click=on_random_item, args=(engine,))
    with camera_tab:
        st.camera_input("Take a photo", key="camera", on_change=on_upload, args=("camera",))

    if st.session_state.get("upload_error"):
        st.error(plain(st.session_state.upload_error))
    query: Query | None = st.session_state.get("query")
    opinions = shopper_opinions(engine)
    panel = None
    if query is None and words():
        words_results(engine, words(), filters, opinions)
    elif query is None:
        st.info("Search by words, or choose a photo or an item, to see matching catalog items.")
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
            same, matching = same_category(engine, *image_key(engine, query))
            same = same if matching else {}  # no item has the category: nothing to keep
        wanted = _combine(filters, same)
        started = time.perf_counter()
        text = words()
        if query.item_id is not None:
            query_image = image_of(engine, query.item_id)
            if wanted is None:
                results = []
            elif text:
                results = engine.search(text, k=k, filters=wanted, item_id=query.item_id)
            else:
                results = engine.similar(query.item_id, k=k, filters=wanted)
        else:
            query_image = png(load_image(query.data), THUMBNAIL)
            if wanted is None:
                results = []
            elif text:
                results = engine.search(text, query.data, k, filters=wanted)
            else:
                results = engine.recommend(query.data, k=k, filters=wanted)
    except BadImageError as exc:
        st.error(
            f"**{plain(query.label)}** could not be used as a photo: {plain(exc.reason)}. "
            "Try a JPEG, PNG or WebP image of a garment."
        )
        return None
    except (OSError, StylefinderError) as exc:
        st.error(plain(exc))
        return None
    except ValueError as exc:  # words without a word to search for
        st.warning(plain(exc))
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
        heading = f"most similar matching “{plain(text)}”" if text else "most similar"
        empty = "No catalog item passes these filters."
        _result_block(
            engine, results, opinions, f"{heading}** · found in {elapsed_ms:.0f} ms", shown, empty
        )
    return panel


def _result_block(engine: Engine, results, opinions, heading: str, shown: str, empty: str) -> None:
    """The results' heading ("**N " + `heading`, then the filters shown) and their cards."""
    st.markdown(f"**{len(results)} {heading}" + (f" · only {shown}" if shown else ""))
    if not results:
        st.warning(empty)
    result_grid(engine, results, opinions)


def words() -> str:
    """The words typed in the search box (blank: none)."""
    return str(st.session_state.get("words") or "").strip()


def words_results(
    engine: Engine, text: str, filters: dict[str, list[str]], opinions: dict[str, str]
) -> None:
    """The items best matching words alone (no photo or item chosen)."""
    k = int(st.session_state.get("k", 5))
    started = time.perf_counter()
    try:
        results = engine.search(text, k=k, filters=filters or None)
    except ValueError as exc:  # no word to search for
        st.warning(plain(exc))
        return
    except (OSError, StylefinderError) as exc:
        st.error(plain(exc))
        return
    elapsed_ms = (time.perf_counter() - started) * 1000
    heading = f"best matching “{plain(text)}”** · found in {elapsed_ms:.0f} ms"
    empty = "No catalog item matches these words and filters."
    _result_block(engine, results, opinions, heading, describe_filters(filters.items()), empty)


def recognition_panel(engine: Engine, query: Query) -> None:
    """What the query shows: the top 3 categories with their probabilities and where they come
    from, colour chips, and the "Same category only" toggle."""
    with st.spinner("Recognizing…"):
        try:
            key = image_key(engine, query)
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
            on_change=on_same_category,
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
            note = f"From your {plural(likes, 'like')}"
            note += f" and {plural(dislikes, 'dislike')}." if dislikes else "."
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
            on_click=on_forget,
            args=(engine,),
        )
    with picks_col:
        try:
            picks = engine.recommend_for_user(shopper_id(), k=FOR_YOU, filters=filters or None)
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
