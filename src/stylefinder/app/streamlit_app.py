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

This file is the script Streamlit runs (`APP_SCRIPT`); the page is drawn by `sidebar`,
`find_similar_page` and `catalog_page` (with `cards`), from the state in `session` and what
`cache` keeps.
"""

from __future__ import annotations

import os

import streamlit as st

from stylefinder.app.cache import load_engine
from stylefinder.app.catalog_page import catalog_page
from stylefinder.app.find_similar_page import find_similar_page
from stylefinder.app.markup import plain
from stylefinder.app.sidebar import sidebar
from stylefinder.errors import StylefinderError

INDEX_ENV = "STYLEFINDER_INDEX"


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
