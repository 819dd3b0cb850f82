"""Metadata filters, applied before ranking so that k results still come back when they exist.

A filter maps a metadata column to what it allows; an item passes when every filtered column
allows its value. What a column allows is one of these, or a list of them (any of):

- text: the value, compared without regard to case on text columns (`dress` matches "Dress");
  a text that reads as a number compares as a number (`49` matches 49, 49.0 and "49").
- a comma list, in any column: `Dresses,Skirts` allows either. Commas always separate
  alternatives, so a value that itself holds a comma is matched only when given whole
  (`Dress,Coat` also allows an item whose value is exactly "Dress,Coat"); numbers with a
  thousands or decimal comma ("1,000", "49,5") are two values: write them without the comma.
- a range, on number columns: `<50`, `<=50`, `>20`, `>=20`, `20..80` (both ends included),
  `..80`, `20..`, or a `Range` in Python. A range on a text column, or a bound that is not a
  number (`<abc`), raises BadFilterError. A text that some item holds exactly is taken as that
  value, not as a range.
- a number (Python API): equal numbers pass (49 matches 49, 49.0 and the text "49" that indexes
  made before numbers were kept hold).

A number column is one whose every non-empty value is a number or a text that reads as one
(old indexes keep "49"); every other column is a text column. Multi-value columns (`colours`:
names separated by commas) pass when any of their names is allowed; on `colours` a colour
family or a shop's word allows the names it stands for (`blue`: navy, blue and turquoise;
`navy blue`: navy; see `colour_words`). A filter on a column that
no item has raises UnknownColumnError, listing the columns the index has (an index without
items raises nothing: there is nothing to filter). On the command line (`--filter`) and in the
API (`?filter=`) a filter is written `COLUMN=VALUE` (`COLUMN:VALUE`), or with the comparison in
place of the separator: `price<50`, `price>=20`, `price=20..80` (`price:<50`, `price:20..80`).

Example:
    >>> from stylefinder.types import Item
    >>> items = [Item("a", "a.png", "h1", metadata={"category": "Dress", "price": 49}),
    ...          Item("b", "b.png", "h2", metadata={"category": "Coat", "price": 120}),
    ...          Item("c", "c.png", "h3", metadata={"category": "Bag", "price": "15.5"})]
    >>> allowed_rows(items, {"category": ["dress", "bag"]}).tolist()
    [True, False, True]
    >>> allowed_rows(items, parse_filters(["price<=50", "category=Dress,Coat"], "=")).tolist()
    [True, False, False]
    >>> allowed_rows(items, {"price": Range(low=20, high=200)}).tolist()
    [True, True, False]
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stylefinder.colour_words import colour_terms
from stylefinder.errors import BadFilterError, UnknownColumnError
from stylefinder.types import Item, load_metadata, metadata_columns

COLOURS_COLUMN = "colours"  # named at index time; filtered by family and shop words too
MULTI_VALUE_COLUMNS = frozenset({COLOURS_COLUMN})

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NUMBER_START = frozenset("0123456789+-.")
_COMPARISONS = (
    ("<=", "high", True),
    (">=", "low", True),
    ("<", "high", False),
    (">", "low", False),
)


@dataclass(frozen=True)
class Range:
    """Numbers from `low` to `high` (None: no bound on that side), ends included by default.

    Example:
        >>> Range(high=50, high_inclusive=False)
        Range(low=None, high=50, low_inclusive=True, high_inclusive=False)
        >>> Range.parse("20..80"), Range.parse(">=20").low, Range.parse("Dress")
        (Range(low=20.0, high=80.0, low_inclusive=True, high_inclusive=True), 20.0, None)
    """

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            bound = getattr(self, name)
            if bound is not None and (as_number(bound) is None or isinstance(bound, str)):
                raise BadFilterError(f"a range's {name} must be a number or None, got {bound!r}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise BadFilterError(
                f"the range {self} is empty: its low end is above its high end; swap them"
            )

    def __str__(self) -> str:
        """The range as a filter text: `20..80`, `..80`, `<50`, `>20`, or `(20..80]`."""
        low = "" if self.low is None else _plain(self.low)
        high = "" if self.high is None else _plain(self.high)
        open_low = self.low is not None and not self.low_inclusive
        open_high = self.high is not None and not self.high_inclusive
        if not open_low and not open_high:
            return f"{low}..{high}"
        if self.low is None:
            return f"<{high}"
        if self.high is None:
            return f">{low}"
        return f"{'(' if open_low else '['}{low}..{high}{')' if open_high else ']'}"

    @classmethod
    def parse(cls, text: str) -> Range | None:
        """The range `text` writes (`<50`, `<=50`, `>20`, `>=20`, `20..80`, `..80`, `20..`),
        None when it writes none; BadFilterError when a bound is not a number."""
        text = text.strip()
        for operator, side, inclusive in _COMPARISONS:
            if text.startswith(operator):
                bound = _bound(text, text[len(operator) :])
                if bound is None:
                    raise BadFilterError(f"the range {text!r} wants a number after {operator}")
                return cls(**{side: bound, f"{side}_inclusive": inclusive})
        low, found, high = text.partition("..")
        if not found:
            return None
        if not low.strip() and not high.strip():
            raise BadFilterError(f"the range {text!r} wants a bound: LOW..HIGH, ..HIGH or LOW..")
        return cls(low=_bound(text, low), high=_bound(text, high))

    def contains(self, numbers: np.ndarray) -> np.ndarray:
        """True where `numbers` lie in the range (NaN, for values that are not numbers: False)."""
        inside = ~np.isnan(numbers)
        if self.low is not None:
            inside &= numbers >= self.low if self.low_inclusive else numbers > self.low
        if self.high is not None:
            inside &= numbers <= self.high if self.high_inclusive else numbers < self.high
        return inside


FilterValue = str | int | float | Range
Filters = Mapping[str, FilterValue | Sequence[FilterValue]]


def parse_filters(texts: Sequence[str], separator: str) -> dict[str, list[str]]:
    """Filters from "COLUMN<separator>VALUE" texts, or with a comparison in place of the
    separator ("price<50", "price>=20"); a repeated column allows several values. The values
    are kept as written (ranges and comma lists are read when the filter is applied).

    Example:
        >>> parse_filters(["category=Bag", "category=Dress", "price<=50"], "=")
        {'category': ['Bag', 'Dress'], 'price': ['<=50']}
        >>> parse_filters(["price:20..80", "colours:red,navy"], ":")
        {'price': ['20..80'], 'colours': ['red,navy']}
    """
    filters: dict[str, list[str]] = {}
    for text in texts:
        column, value = _split_filter(text, separator)
        filters.setdefault(column, []).append(value)
    return filters


def _split_filter(text: str, separator: str) -> tuple[str, str]:
    """A filter text's column and value; a comparison (`<`, `>`) stays with the value."""
    found = [at for at in (text.find(separator), text.find("<"), text.find(">")) if at >= 0]
    column = text[: min(found)].strip() if found else ""
    if not column:
        raise BadFilterError(
            f"filter wants COLUMN{separator}VALUE (or a range: COLUMN<50, COLUMN>=20, "
            f"COLUMN{separator}20..80), got {text!r}"
        )
    at = min(found)
    value = text[at + len(separator) :] if text.startswith(separator, at) else text[at:]
    return column, value.strip()


def allowed_rows(items: Sequence[Item], filters: Filters | None) -> np.ndarray:
    """A boolean mask over `items`: True where the item passes every filter (for repeated
    filters on the same items, keep a `MetadataColumns`).

    Example:
        >>> items = [Item("a", "a.png", "h", metadata={"size": 38})]
        >>> allowed_rows(items, {"size": "36..40"}).tolist()
        [True]
    """
    return MetadataColumns(items).mask(filters)


class _Column:
    """One metadata column of a fixed list of items, as value codes.

    `codes`: per item, the code of its value (-1: none); `values`: the values by code;
    `rows_of`: for each comparison key (a float for numbers, casefolded text otherwise; each
    name of a multi-value column), the code or codes holding it; `numbers`: per code, its
    number (NaN when it is none); `not_number`: a value that is not a number (None: a number
    column); `unknown`: no item has the column.
    """

    def __init__(self, name: str, codes: np.ndarray, values: list, *, unknown: bool) -> None:
        self.name, self.codes, self.values, self.unknown = name, codes, values, unknown
        self.numbers = np.full(len(values), np.nan)
        self.not_number: object = None
        self.rows_of: dict[float | str, int | list[int]]
        if name in MULTI_VALUE_COLUMNS:
            self._read_names()
        else:
            self._read_values()

    def _read_values(self) -> None:
        """One key per value (100,000 distinct titles: about 50 ms)."""
        keys = [comparison_key(value) for value in self.values]
        self.rows_of = dict(zip(keys, range(len(keys)), strict=True))
        if len(self.rows_of) < len(keys):  # values that compare equal ("Dress", "dress", 49, "49")
            self.rows_of = {}
            for code, key in enumerate(keys):
                self.rows_of.setdefault(key, []).append(code)  # type: ignore[union-attr]
        floats = [code for code, key in enumerate(keys) if key.__class__ is float]
        self.numbers[floats] = [keys[code] for code in floats]
        texts = (code for code, key in enumerate(keys) if key and key.__class__ is str)
        self.not_number = next((self.values[code] for code in texts), None)

    def _read_names(self) -> None:
        """A multi-value column: each of its names (a text column, for ranges)."""
        self.rows_of = {}
        for code, value in enumerate(self.values):
            for key in dict.fromkeys(comparison_key(name) for name in value_names(value)):
                self.rows_of.setdefault(key, []).append(code)  # type: ignore[union-attr]
            if self.not_number is None and value_names(value):
                self.not_number = value

    def passes(self, alternatives: list[Range | float | str]) -> np.ndarray:
        """Per code (and a last False, for items without a value), whether any alternative
        allows it."""
        passes = np.zeros(len(self.values) + 1, bool)
        for alternative in alternatives:
            if isinstance(alternative, _RangeText):
                exact = self.rows_of.get(comparison_key(alternative))
                if exact is not None:  # some item holds this very text: that value
                    passes[exact] = True
                    continue
                alternative = Range.parse(alternative)
            if isinstance(alternative, Range):
                passes[:-1] |= self.in_range(alternative)
            else:
                passes[self.rows_of.get(alternative, [])] = True
        return passes

    def in_range(self, wanted: Range) -> np.ndarray:
        """Per code, whether its number lies in `wanted`; BadFilterError on a text column."""
        if self.not_number is not None:
            raise BadFilterError(
                f"filter {self.name!r}: {wanted} is a range, but {self.name} is a text column "
                f"(it holds {value_text(self.not_number)!r}); ranges need a column of numbers: "
                f"filter {self.name} on its values instead"
            )
        return wanted.contains(self.numbers)


def filter_alternatives(column: str, wanted: object) -> list[Range | float | str]:
    """What one filter allows, any of: ranges, numbers and casefolded texts (`comparison_key`).
    A text written as a range (`is_range_text`) is the range unless some item holds it.

    Example:
        >>> filter_alternatives("price", ["<50", 49, "Dress,Coat"])
        ['<50', 49.0, 'dress,coat', 'dress', 'coat']
    """
    entries = wanted if isinstance(wanted, list | tuple | set | frozenset) else [wanted]
    read: list[Range | float | str] = []
    for entry in entries:
        if isinstance(entry, Range):
            read.append(entry)
        elif isinstance(entry, int | float) and not isinstance(entry, bool):
            read.append(float(entry))
        elif isinstance(entry, str):
            read.extend(_read_text(entry))
        else:
            raise BadFilterError(
                f"filter {column!r} wants text, a number, a Range or a list of those, got {entry!r}"
            )
    if column == COLOURS_COLUMN:  # a family or a shop word allows the names it stands for
        words = [alternative for alternative in read if isinstance(alternative, str)]
        for word in words:
            read.extend(sorted((colour_terms(word) or frozenset()) - set(read)))
    return read


def _read_text(text: str) -> list[Range | float | str]:
    """A filter text's alternatives: the whole text when it holds a comma, and each part."""
    parts = [part.strip() for part in text.split(",")]
    read: list[Range | float | str] = []
    if len(parts) > 1:
        read.append(comparison_key(text))  # a value that itself holds commas, given whole
        parts = [part for part in parts if part] or [""]
    for part in parts:
        if part[:1] in ("<", ">") or ".." in part:
            read.append(_RangeText(part))
        else:
            read.append(comparison_key(part))
    return read


class _RangeText(str):
    """A filter text written as a range: a range, unless some item holds that very text."""

    __slots__ = ()


class MetadataColumns:
    """The metadata of a fixed list of items, one filtered column at a time, as value codes.

    A column is read from the items on its first filter (one pass); after that a filter costs a
    lookup per allowed value (a vector comparison for a range) and one gather over the rows,
    instead of a pass over every item (100,000 items: under a millisecond, against 40 to
    130 ms). The columns the index has are listed only when a filter names one no item has.
    Thread-safe.

    Example:
        >>> from stylefinder.types import Item
        >>> columns = MetadataColumns([Item("a", "a.png", "h", metadata={"colours": "red,navy"})])
        >>> columns.mask({"colours": "navy"}).tolist()
        [True]
        >>> columns.mask({"colour": "navy"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        stylefinder.errors.UnknownColumnError: unknown filter column 'colour'; the index has: ...
    """

    def __init__(self, items: Sequence[Item | None]) -> None:
        self._items = items  # by row; None: an empty row (a removed item), which never passes
        self._present = [item for item in items if item is not None]
        self._live = np.fromiter((item is not None for item in items), bool, count=len(items))
        self._columns: dict[str, _Column] = {}
        self._known: list[str] | None = None
        self._lock = threading.Lock()

    def mask(self, filters: Filters | None) -> np.ndarray:
        """True where the item passes every filter (see the module's docstring for the rules)."""
        mask = self._live.copy()
        for column, wanted in (filters or {}).items():
            if _no_restriction(wanted) or not self._present:
                continue
            read = self._column(column)
            # code -1 (no value) reads the last entry: a False appended for it
            mask &= read.passes(filter_alternatives(column, wanted))[read.codes]
        return mask

    def known(self) -> list[str]:
        """The metadata columns of the items, sorted (every key that any item has).

        Example:
            >>> MetadataColumns([Item("a", "a.png", "h", metadata={"b": "1", "a": "2"})]).known()
            ['a', 'b']
        """
        with self._lock:
            if self._known is None:
                self._known = metadata_columns(self._present)
            return self._known

    def _column(self, column: str) -> _Column:
        """The column read from the items, or UnknownColumnError when no item has it."""
        with self._lock:
            read = self._columns.get(column)
            if read is None:
                read = self._columns[column] = self._read(column)
        if read.unknown:
            known = self.known()
            raise UnknownColumnError(
                f"unknown filter column {column!r}; the index has: "
                + (", ".join(known) if known else "no metadata columns"),
                known=known,
            )
        return read

    def _read(self, column: str) -> _Column:
        """One pass over the items: per item, the code of its value in `column` (-1: none)."""
        load_metadata(self._present)
        code_of: dict[object, int] = {}
        try:
            codes = self._codes(column, code_of, lambda value: value)
        except TypeError:  # a value JSON made unhashable (a list, an object): kept as its JSON
            code_of.clear()
            codes = self._codes(column, code_of, hashable_value)
        unknown = not code_of and not any(column in item.metadata for item in self._present)
        return _Column(column, codes, list(code_of), unknown=unknown)

    def _codes(self, column: str, code_of: dict, convert) -> np.ndarray:
        return np.fromiter(
            (
                -1
                if item is None or (v := item.metadata.get(column)) is None or v != v  # no value
                else code_of.setdefault(convert(v), len(code_of))
                for item in self._items
            ),
            np.int64,
            count=len(self._items),
        )


def _no_restriction(wanted: object) -> bool:
    """An empty list of allowed values restricts nothing (as before)."""
    return isinstance(wanted, list | tuple | set | frozenset) and not wanted


def column_values(items: Sequence[Item], *, max_values: int = 100) -> dict[str, list[str]]:
    """The metadata columns usable as filters (at most `max_values` distinct values each),
    with their values as text, sorted (numbers by value).

    Example:
        >>> column_values([Item("a", "a.png", "h", metadata={"size": 40}),
        ...                Item("b", "b.png", "h", metadata={"size": "8"})])
        {'size': ['8', '40']}
    """
    seen: dict[str, set[str]] = {}
    load_metadata(items)
    for item in items:
        for column, value in item.metadata.items():
            values = seen.setdefault(column, set())
            if len(values) <= max_values and value is not None and value == value:
                values.update(
                    value_names(value) if column in MULTI_VALUE_COLUMNS else [value_text(value)]
                )
    return {c: sorted(v, key=_value_order) for c, v in sorted(seen.items()) if len(v) <= max_values}


# -- the parsing, for other filter engines (`recommend.pg_filters`) ------------------------------


def is_range_text(alternative: object) -> bool:
    """True for an alternative of `filter_alternatives` written as a range (`<50`, `20..80`)."""
    return isinstance(alternative, _RangeText)


def restricts(wanted: object) -> bool:
    """False for a filter that allows anything (an empty list of values)."""
    return not _no_restriction(wanted)


# -- values: shared with `columns.describe_columns` -----------------------------------------------


def as_number(value: object) -> float | None:
    """The number a metadata value holds (an int, a float, or a text that reads as one)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        return None if number != number else number
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in _NUMBER_START and _NUMBER.fullmatch(text):
            return float(text)
    return None


def value_text(value: object) -> str:
    """A metadata value as text: numbers without a needless ".0", booleans as true/false."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return _plain(value)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def comparison_key(value: object) -> float | str:
    """What a value is compared as: its number, else its text without regard to case.

    Example:
        >>> comparison_key(" 49 "), comparison_key("Dress")
        (49.0, 'dress')
    """
    if value.__class__ is str and (first := value[:1]) not in _NUMBER_START and not first.isspace():
        return value.strip().casefold()  # the common case, made fast: a text that is not a number
    number = as_number(value)
    return value_text(value).casefold() if number is None else number


def value_names(value: object) -> list[str]:
    """The names a multi-value column's value holds ("red, navy" -> ["red", "navy"])."""
    return [name for name in (part.strip() for part in value_text(value).split(",")) if name]


def is_empty(value: object) -> bool:
    """True for a missing metadata value: None, NaN or blank text."""
    return value is None or value != value or (isinstance(value, str) and not value.strip())


def _plain(number: float) -> str:
    """A number as written: 49 for 49.0, 15.5 for 15.5."""
    return str(int(number)) if float(number).is_integer() and abs(number) < 2**53 else str(number)


def _value_order(text: str) -> tuple[int, float, str]:
    number = as_number(text)
    return (1, 0.0, text.casefold()) if number is None else (0, number, text)


def hashable_value(value: object) -> object:
    """The value, or its text where JSON made it unhashable (a list, an object)."""
    return value_text(value) if isinstance(value, list | dict) else value


def _bound(text: str, bound: str) -> float | None:
    """A range's bound (None for an empty one), or BadFilterError when it is not a number."""
    if not bound.strip():
        return None
    number = as_number(bound)
    if number is None or math.isnan(number):
        raise BadFilterError(
            f"the range {text!r} has a bound that is not a number: {bound.strip()!r}; "
            "write for example <50, >=20 or 20..80"
        )
    return number
