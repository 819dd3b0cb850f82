"""Item cards: image, title (or id), price, a note, the visible details, a shop link, a button
that makes the item the query, and like and dislike buttons. What shows follows the index's
display settings (`recommend.display`); every catalog text is escaped (`markup.plain`)."""

from __future__ import annotations

import streamlit as st

from stylefinder.app.cache import image_of
from stylefinder.app.markup import MAX_CHARS, plain
from stylefinder.app.session import on_feedback, set_item_query
from stylefinder.engine import Engine, Recommendation
from stylefinder.recommend.display import DisplaySettings, display_fields, read_display

COLUMNS = 5


def result_grid(
    engine: Engine, results: list[Recommendation], opinions: dict[str, str] | None = None
) -> None:
    """Search results as cards, each noting its similarity."""
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
    settings = read_display(engine.view.state)
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
                            on_click=set_item_query,
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
    image = image_of(engine, item_id)
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
            on_click=on_feedback,
            args=(engine, item_id, kind, current),
        )
