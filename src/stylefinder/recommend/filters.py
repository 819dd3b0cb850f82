"""Metadata filters, applied before ranking so that k results still come back when they exist.

A filter maps a metadata column to an allowed value or a list of allowed values; an item passes
when every filtered column holds one of the allowed values. Multi-value columns (`colours`: names
separated by commas) pass when any of their values is allowed.

Example:
    >>> from stylefinder.types import Item, load_metadata
    >>> items = [Item("a", "a.png", "h1", metadata={"category": "Dress"}),
    ...          Item("b", "b.png", "h2", metadata={"category": "Coat"})]
    >>> allowed_rows(items, {"category": ["Dress"]}).tolist()
    [True, False]
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import numpy as np

from stylefinder.types import Item, load_metadata

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
    """A boolean mask over `items`: True where the item passes every filter (for repeated
    filters on the same items, keep a `MetadataColumns`)."""
    return MetadataColumns(items).mask(filters)


class MetadataColumns:
    """The metadata of a fixed list of items, one filtered column at a time, as value codes.

    A column is read from the items on its first filter (one pass); after that a filter costs a
    lookup per distinct value and one gather over the rows, instead of a pass over every item
    (100,000 items: under a millisecond, against 40 to 130 ms). Thread-safe.

    Example:
        >>> from stylefinder.types import Item, load_metadata
        >>> columns = MetadataColumns([Item("a", "a.png", "h", metadata={"colours": "red,navy"})])
        >>> columns.mask({"colours": "navy"}).tolist()
        [True]
    """

    def __init__(self, items: Sequence[Item]) -> None:
        self._items = items
        self._columns: dict[str, tuple[np.ndarray, list[str]]] = {}
        self._lock = threading.Lock()

    def mask(self, filters: Filters | None) -> np.ndarray:
        """True where the item passes every filter."""
        mask = np.ones(len(self._items), bool)
        for column, wanted in (filters or {}).items():
            allowed = {wanted} if isinstance(wanted, str) else set(wanted)
            if not allowed:
                continue
            codes, values = self._column(column)
            if column in MULTI_VALUE_COLUMNS:
                passes = [bool(allowed.intersection(v.split(","))) for v in values]
            else:
                passes = [v in allowed for v in values]
            # code -1 (no value) reads the last entry: a False appended for it
            mask &= np.array([*passes, False], bool)[codes]
        return mask

    def _column(self, column: str) -> tuple[np.ndarray, list[str]]:
        """Per item, the code of its value in `column` (-1: none), and the values by code."""
        with self._lock:
            if column not in self._columns:
                load_metadata(self._items)
                code_of: dict[str, int] = {}
                codes = np.fromiter(
                    (
                        -1
                        if (v := item.metadata.get(column)) is None
                        else code_of.setdefault(v, len(code_of))
                        for item in self._items
                    ),
                    np.int64,
                    count=len(self._items),
                )
                self._columns[column] = (codes, list(code_of))
            return self._columns[column]


def column_values(items: Sequence[Item], *, max_values: int = 100) -> dict[str, list[str]]:
    """The metadata columns usable as filters (at most `max_values` distinct values each),
    with their sorted values."""
    seen: dict[str, set[str]] = {}
    load_metadata(items)
    for item in items:
        for column, value in item.metadata.items():
            values = seen.setdefault(column, set())
            if len(values) <= max_values:
                values.update(value.split(",") if column in MULTI_VALUE_COLUMNS else [value])
    return {c: sorted(v) for c, v in sorted(seen.items()) if len(v) <= max_values}
