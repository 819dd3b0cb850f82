"""Metadata filters, applied before ranking so that k results still come back when they exist.

A filter maps a metadata column to an allowed value or a list of allowed values; an item passes
when every filtered column holds one of the allowed values. Multi-value columns (`colours`: names
separated by commas) pass when any of their values is allowed.

Example:
    >>> from stylefinder.types import Item
    >>> items = [Item("a", "a.png", "h1", metadata={"category": "Dress"}),
    ...          Item("b", "b.png", "h2", metadata={"category": "Coat"})]
    >>> allowed_rows(items, {"category": ["Dress"]}).tolist()
    [True, False]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from stylefinder.types import Item

Filters = Mapping[str, str | Sequence[str]]
MULTI_VALUE_COLUMNS = frozenset({"colours"})


def parse_filters(texts: Sequence[str], separator: str) -> dict[str, list[str]]:
    """Filters from "COLUMN<separator>VALUE" texts; a repeated column allows several values.

    Example:
        >>> parse_filters(["category=Bag", "category=Dress"], "=")
        {'category': ['Bag', 'Dress']}
    """
    filters: dict[str, list[str]] = {}
    for text in texts:
        column, found, value = text.partition(separator)
        if not found or not column.strip():
            raise ValueError(f"filter wants COLUMN{separator}VALUE, got {text!r}")
        filters.setdefault(column.strip(), []).append(value.strip())
    return filters


def allowed_rows(items: Sequence[Item], filters: Filters | None) -> np.ndarray:
    """A boolean mask over `items`: True where the item passes every filter."""
    mask = np.ones(len(items), bool)
    for column, wanted in (filters or {}).items():
        allowed = {wanted} if isinstance(wanted, str) else set(wanted)
        if not allowed:
            continue
        values = [item.metadata.get(column) for item in items]
        if column in MULTI_VALUE_COLUMNS:
            passes = (bool(v and allowed.intersection(v.split(","))) for v in values)
        else:
            passes = (v in allowed for v in values)
        mask &= np.fromiter(passes, bool, count=len(items))
    return mask


def column_values(items: Sequence[Item], *, max_values: int = 100) -> dict[str, list[str]]:
    """The metadata columns usable as filters (at most `max_values` distinct values each),
    with their sorted values."""
    seen: dict[str, set[str]] = {}
    for item in items:
        for column, value in item.metadata.items():
            values = seen.setdefault(column, set())
            if len(values) <= max_values:
                values.update(value.split(",") if column in MULTI_VALUE_COLUMNS else [value])
    return {c: sorted(v) for c, v in sorted(seen.items()) if len(v) <= max_values}
