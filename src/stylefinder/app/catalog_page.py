"""The "Catalog" page: the index's header, then its items, PAGE_SIZE cards a page, filtered by
the sidebar."""

from __future__ import annotations

import streamlit as st

from stylefinder.app.cards import card_grid
from stylefinder.app.session import shopper_opinions
from stylefinder.app.sidebar import describe_filters
from stylefinder.engine import Engine

PAGE_SIZE = 20


def catalog_page(engine: Engine, filters: dict[str, list[str]]) -> None:
    """The index's header and one page of its items passing `filters`."""
    st.title("Catalog")
    # the header and view, not engine.info(): that also describes every column and counts
    # shoppers and disk space, too much for each rerun of the page
    header, view = engine.store.header, engine.view
    updated_at = view.state.get("updated_at") or header.created_at
    st.markdown(
        f"**{len(view):,} items** · backbone **{header.backbone}** ({header.dim}-d, "
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
        opinions=shopper_opinions(engine),
    )


def _when(timestamp: str) -> str:
    return timestamp.replace("T", " ")[:16] + " UTC"
