"""The sidebar: page choice, number of results and the facets of the display settings as
filters (with value counts); and how chosen filters read on the page."""

from __future__ import annotations

import re
from collections.abc import Iterable

import streamlit as st

from stylefinder.app.cache import catalog_key, facet_options
from stylefinder.app.markup import plain
from stylefinder.engine import Engine

_COUNTED = re.compile(r" \([\d,]+\)$")  # an option's count, as `_with_count` shows it


def sidebar(engine: Engine) -> dict[str, list[str]]:
    """Page choice, number of results and metadata filters; returns the filters."""
    st.sidebar.title("stylefinder")
    st.sidebar.radio("Page", ["Find similar", "Catalog"], key="page")
    st.sidebar.slider("Results", 1, 20, 5, key="k")
    filters: dict[str, list[str]] = {}
    options = facet_options(engine, catalog_key(engine), engine.view.generation)
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
