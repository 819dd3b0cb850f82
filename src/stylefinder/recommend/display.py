"""How items are shown: which metadata columns are the title, the price and the link, which are
offered as filters (facets, with value counts), and which are never shown.

The settings live in the index manifest's state table under the key "display" (JSON), so the
CLI, the HTTP API and the web app show the same thing. Unset, every column but internal ones
(`category_pred`) is shown as a detail, the item id stands for the title, and the facets are
chosen automatically: category columns (few distinct values, see `recommend.columns`), never
free text, numbers (prices, years) or internal columns.

Example:
    >>> settings = DisplaySettings(title="name", hidden=("sku",))
    >>> display_fields({"name": "Red dress", "sku": "A1", "colours": "red"}, settings)
    {'title': 'Red dress', 'price': None, 'link': None, 'details': {'colours': 'red'}}
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from stylefinder.errors import UnknownColumnError
from stylefinder.recommend.columns import ColumnSummary, describe_columns, value_counts
from stylefinder.recommend.filters import is_empty, value_text
from stylefinder.types import Item, metadata_columns

log = logging.getLogger(__name__)

STATE_KEY = "display"
#: Columns stylefinder writes for itself: never shown or offered unless a setting names them.
INTERNAL_COLUMNS = frozenset({"category_pred"})
#: The most facets chosen automatically.
MAX_AUTO_FACETS = 6
FIELDS = ("title", "price", "link")
KEYS = (*FIELDS, "facets", "hidden")
AUTO = "auto"


@dataclass(frozen=True)
class DisplaySettings:
    """Which metadata columns are the title, the price and the link of an item, which columns
    are filters (`facets`; None: chosen automatically; (): none) and which are never shown.

    Example:
        >>> DisplaySettings.from_dict({"title": "name", "hidden": ["sku"]}).to_dict()
        {'title': 'name', 'price': None, 'link': None, 'facets': None, 'hidden': ['sku']}
    """

    title: str | None = None
    price: str | None = None
    link: str | None = None
    facets: tuple[str, ...] | None = None
    hidden: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """The settings as JSON-ready data (tuples as lists)."""
        return {
            "title": self.title,
            "price": self.price,
            "link": self.link,
            "facets": None if self.facets is None else list(self.facets),
            "hidden": list(self.hidden),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> DisplaySettings:
        """Settings from `to_dict`'s data; a missing key keeps its default, an unknown one or a
        value of the wrong type raises ValueError."""
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise ValueError(f"unknown display settings {unknown}; the settings are {list(KEYS)}")
        fields = {key: _column_or_none(key, data.get(key)) for key in FIELDS}
        facets = data.get("facets")
        return cls(
            **fields,
            facets=None if facets is None else _columns("facets", facets),
            hidden=_columns("hidden", data.get("hidden") or ()),
        )

    def columns(self) -> set[str]:
        """Every column the settings name."""
        named = {self.title, self.price, self.link, *(self.facets or ()), *self.hidden}
        return {column for column in named if column}


def _column_or_none(key: str, value: object) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValueError(f"display setting {key!r} wants a column name, got {value!r}")
    return value.strip()


def _columns(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, Iterable) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"display setting {key!r} wants column names, got {value!r}")
    return tuple(dict.fromkeys(v.strip() for v in value if v.strip()))


def read_display(state: Mapping[str, str]) -> DisplaySettings:
    """The display settings kept in an index's state (a snapshot's `state`); the defaults when
    there are none, or when they cannot be read (logged).

    Example:
        >>> read_display({"display": '{"title": "name"}'}).title
        'name'
        >>> read_display({}) == DisplaySettings()
        True
    """
    text = state.get(STATE_KEY)
    if not text:
        return DisplaySettings()
    try:
        return DisplaySettings.from_dict(json.loads(text))
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning("the index's display settings cannot be read (%s); using the defaults", exc)
        return DisplaySettings()


def write_display(
    index: str | Path, settings: DisplaySettings | Mapping[str, object]
) -> DisplaySettings:
    """Store display settings in the catalog at `index` (a directory or a PostgreSQL URL);
    returns what is stored.

    `settings` replaces the stored settings when it is a `DisplaySettings`, or updates them when
    it is a mapping (as `parse_display_assignments` gives). Every column named by the new
    settings must be a metadata column of the index's items, else `UnknownColumnError` (which
    lists the known ones) and nothing is written.

    Example:
        >>> write_display("shop-index", {"title": "productDisplayName"})  # doctest: +SKIP
        DisplaySettings(title='productDisplayName', price=None, link=None, facets=None, hidden=())
    """
    from stylefinder.index.stores import open_store  # data flows down: only this writer writes

    store = open_store(index)
    try:
        with store.writer() as writer:
            state, items = _written_over(store, writer)
            current = read_display(state)
            if isinstance(settings, DisplaySettings):
                new, named = settings, settings.columns()
            else:
                parsed = DisplaySettings.from_dict(settings)  # checks the keys and the types
                changes = {key: getattr(parsed, key) for key in settings}
                new, named = dataclasses.replace(current, **changes), parsed.columns()
            _check_columns(named, items, index)
            writer.set_state(STATE_KEY, json.dumps(new.to_dict(), sort_keys=True))
    finally:
        store.close()
    return new


def _written_over(store, writer) -> tuple[Mapping[str, object], Sequence[Item]]:
    """The state and items a writer writes over: a directory's base snapshot, or a PostgreSQL
    catalog's committed rows."""
    base = getattr(writer, "base", None)
    if base is not None:
        return base.state, base.items
    return {STATE_KEY: store.state(STATE_KEY)}, store.items(store.ids())


def _check_columns(named: set[str], items: Sequence[Item], index_dir: str | Path) -> None:
    """Raise `UnknownColumnError` when a named column is in no item's metadata."""
    known = metadata_columns(items)
    unknown = sorted(named - set(known))
    if unknown:
        listed = ", ".join(known) if known else "none"
        raise UnknownColumnError(
            f"the index at {index_dir} has no metadata column {', '.join(map(repr, unknown))}; "
            f"its columns are: {listed}. Use one of them (spelled as in the catalog CSV)",
            known=known,
        )


def parse_display_assignments(texts: Sequence[str]) -> dict[str, object]:
    """Updates of the display settings from KEY=VALUE texts (`stylefinder config set`).

    title, price and link take one column (empty: unset); facets and hidden take columns
    separated by commas (empty: none); `facets=auto` lets stylefinder choose the facets.

    Example:
        >>> parse_display_assignments(["title=productDisplayName", "hidden=year,season"])
        {'title': 'productDisplayName', 'hidden': ('year', 'season')}
        >>> parse_display_assignments(["facets=auto", "link="])
        {'facets': None, 'link': None}
    """
    updates: dict[str, object] = {}
    for text in texts:
        key, found, value = text.partition("=")
        key = key.strip()
        if not found or key not in KEYS:
            raise ValueError(
                f"a display setting reads KEY=VALUE with KEY one of {', '.join(KEYS)}; "
                f"got {text!r} (for example title=productDisplayName or hidden=year,season)"
            )
        if key in FIELDS:
            updates[key] = _column_or_none(key, value)
        elif key == "facets" and value.strip().lower() == AUTO:
            updates[key] = None
        else:
            updates[key] = _columns(key, value)
    return updates


def display_fields(metadata: Mapping[str, object], settings: DisplaySettings) -> dict:
    """What to show of one item: its title, price and link (None when unset or empty) and the
    other visible columns as `details` (values as text). A link is kept only when it is an
    http(s) URL; any other value of the link column shows as a detail, as text. A hidden
    column is never shown, not even as the title.

    Example:
        >>> settings = DisplaySettings(title="name", price="price", link="url")
        >>> display_fields({"name": "Coat", "price": 49.0, "url": "javascript:alert(1)",
        ...                 "category_pred": "Coat", "size": "M"}, settings)
        {'title': 'Coat', 'price': '49', 'link': None, 'details': {'url': 'javascript:alert(1)', 'size': 'M'}}
    """  # noqa: E501
    fields: dict[str, object] = {
        key: None if column in settings.hidden else _value(metadata, column)
        for key, column in ((key, getattr(settings, key)) for key in FIELDS)
    }
    link = fields["link"]
    fields["link"] = safe_link(link) if link else None
    shown_elsewhere = {getattr(settings, key) for key in FIELDS if fields[key]}
    never = INTERNAL_COLUMNS.union(settings.hidden, shown_elsewhere)
    fields["details"] = {
        name: value_text(value)
        for name, value in metadata.items()
        if name not in never and not is_empty(value)
    }
    return fields


def _value(metadata: Mapping[str, object], column: str | None) -> str | None:
    value = metadata.get(column) if column else None
    return None if is_empty(value) else value_text(value)


def safe_link(value: str) -> str | None:
    """`value` when it is an absolute http(s) URL without spaces or control characters, else
    None (a `javascript:` or relative link is never made clickable).

    Example:
        >>> safe_link("https://shop.example/p/1"), safe_link("javascript:alert(1)")
        ('https://shop.example/p/1', None)
    """
    text = value.strip()
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    return text if parts.scheme.lower() in ("http", "https") and parts.hostname else None


def facet_columns(
    items: Sequence[Item],
    settings: DisplaySettings,
    summaries: Sequence[ColumnSummary] | None = None,
) -> list[str]:
    """The columns offered as filters: the configured facets that some item has (in their
    order), or, when `settings.facets` is None, category columns with at least two values,
    never internal, hidden, title, price or link columns (at most MAX_AUTO_FACETS, those
    most items have, by name). `summaries` spares describing the columns again.

    Example:
        >>> items = [Item(str(n), "x.png", "h", metadata={"type": t, "year": str(2010 + n)})
        ...          for n, t in enumerate(["Dress", "Coat", "Dress", "Coat"])]
        >>> facet_columns(items, DisplaySettings())
        ['type']
    """
    never = INTERNAL_COLUMNS.union(settings.hidden, (getattr(settings, k) for k in FIELDS))
    if settings.facets is not None:
        known = set(metadata_columns(items))
        return [c for c in settings.facets if c in known and c not in settings.hidden]
    summaries = describe_columns(items) if summaries is None else summaries
    chosen = [
        s for s in summaries if s.kind == "category" and s.distinct >= 2 and s.name not in never
    ]
    chosen.sort(key=lambda s: (-s.filled, s.name))  # the columns most items have
    return sorted(s.name for s in chosen[:MAX_AUTO_FACETS])


def facet_values(items: Sequence[Item], columns: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """For each column, every value with the number of items holding it, most common first
    (a multi-value column such as `colours` counts each name once per item). The values are
    the texts the filters match.

    Example:
        >>> items = [Item(str(n), "x.png", "h", metadata={"colours": c})
        ...          for n, c in enumerate(["red,navy", "navy", "navy"])]
        >>> facet_values(items, ["colours"])
        {'colours': [('navy', 3), ('red', 1)]}
    """
    return {column: value_counts(items, column) for column in columns}


def facets(items: Sequence[Item], settings: DisplaySettings) -> dict[str, list[tuple[str, int]]]:
    """The filters to offer, each with its values and their counts (see `facet_columns` and
    `facet_values`).

    Example:
        >>> items = [Item(str(n), "x.png", "h", metadata={"type": t})
        ...          for n, t in enumerate(["Dress", "Coat", "Dress"])]
        >>> facets(items, DisplaySettings())
        {'type': [('Dress', 2), ('Coat', 1)]}
    """
    return facet_values(items, facet_columns(items, settings))
