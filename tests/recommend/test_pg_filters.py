"""Filters as SQL over a real PostgreSQL catalog pass exactly the items `allowed_rows` passes."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("psycopg")

from stylefinder.errors import BadFilterError, UnknownColumnError
from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.recommend.filters import Range, allowed_rows, parse_filters
from stylefinder.recommend.pg_filters import PgFilters, filter_clause
from stylefinder.types import EmbeddingSpace, Item

SPACE = EmbeddingSpace("test-backbone", "gem", "w0", 8)
CATEGORIES = ["Dress", "dress ", "Coat", "Bag", "Dress,Coat", "", None, "<50", "Straße"]
COLOURS = ["red,navy", "Navy", " navy , white", "", "black", None, "red", "3,blue", 7]
PRICES = [49, 49.0, "49", " 15.5 ", 120, "1e2", None, "", 0, -5, 80, "80", 20]
SIZES = ["M", "L", 38, "40", "S", None, "XL", "36"]


@pytest.fixture
def catalog(postgres_url, request):
    schema = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:60]
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"
    with PgCatalog.create(url, SPACE) as catalog:
        yield catalog


def _items() -> list[Item]:
    """~50 items with text, numbers, numbers as text, colour lists and missing values."""
    items = []
    for n in range(52):
        metadata = {
            "category": CATEGORIES[n % len(CATEGORIES)],
            "colours": COLOURS[(n * 5) % len(COLOURS)],
            "price": PRICES[(n * 7) % len(PRICES)],
            "size": SIZES[(n * 3) % len(SIZES)],
        }
        if n % 11 == 0:
            del metadata["size"]  # a column some items lack
        if n == 5:
            metadata["brand"] = "Acme"
        items.append(Item(f"item-{n:02d}", f"{n}.png", f"h{n}", metadata=metadata))
    return items


def _load(catalog: PgCatalog, items: list[Item]) -> None:
    rng = np.random.default_rng(0)
    with catalog.writer() as writer:
        for item in items:
            writer.put(item, rng.normal(size=SPACE.dim))


def _passing(catalog: PgCatalog, filters, listed: int | None = None) -> set[str]:
    where = PgFilters(catalog, max_listed_values=listed).clause(filters)
    if where is None:
        return set(catalog.ids())
    clause, params = where
    query = catalog.sql("SELECT id FROM {items} WHERE ") + clause
    with catalog.connection() as conn:
        return {item_id for (item_id,) in conn.execute(query, params)}


FILTERS = [
    {"category": "dress"},
    {"category": "DRESS"},
    {"category": "Dress,Coat"},
    {"category": ["bag", "coat"]},
    {"category": ""},
    {"category": "<50"},  # an item holds this very text: that value, not a range
    {"category": "straße"},
    {"colours": "navy"},
    {"colours": "red,white"},
    {"colours": ["BLACK"]},
    {"colours": "3"},
    {"colours": 7},
    {"colours": "blue"},  # a family: blue, navy and turquoise
    {"colours": "Navy Blue"},  # a shop's word for navy
    {"price": 49},
    {"price": "49"},
    {"price": "<50"},
    {"price": "<=49"},
    {"price": ">49"},
    {"price": ">=80"},
    {"price": "20..80"},
    {"price": "..15.5"},
    {"price": "100.."},
    {"price": Range(low=15.5, high=80, low_inclusive=False, high_inclusive=False)},
    {"price": ["<0", "100..", 49]},
    {"size": "m,38"},
    {"size": 40},
    {"brand": "acme"},
    {"category": "dress", "price": "<100"},
    {"colours": "navy", "size": "M,L,S"},
    {"price": []},  # an empty list restricts nothing
    parse_filters(["price<=80", "category=Dress,Bag"], "="),
]


@pytest.mark.parametrize("listed", [None, 0], ids=["values-listed", "text-expressions"])
def test_sql_filters_pass_the_items_allowed_rows_passes(catalog, listed):
    items = _items()
    _load(catalog, items)
    stored = catalog.items([item.id for item in items])
    for filters in FILTERS:
        mask = allowed_rows(stored, filters)
        expected = {item.id for item, ok in zip(stored, mask, strict=True) if ok}
        assert _passing(catalog, filters, listed) == expected, filters
    assert 0 < len(_passing(catalog, {"category": "dress"})) < len(items)  # a real restriction
    clause, _ = PgFilters(catalog, max_listed_values=listed).clause({"category": "dress"})
    assert ("@>" in clause.as_string()) == (listed is None)  # the GIN-indexed form, or not


@pytest.mark.parametrize("listed", [None, 0], ids=["values-listed", "text-expressions"])
def test_sql_filters_raise_as_allowed_rows_does(catalog, listed):
    items = _items()
    _load(catalog, items)
    filters = PgFilters(catalog, max_listed_values=listed)
    for wanted, error in [
        ({"colour": "navy"}, UnknownColumnError),
        ({"category": ">20"}, BadFilterError),  # a range on a text column
        ({"size": "36..40"}, BadFilterError),  # size holds "M": a text column
        ({"colours": "<3"}, BadFilterError),
        ({"price": "<abc"}, BadFilterError),
    ]:
        with pytest.raises(error):
            allowed_rows(items, wanted)
        with pytest.raises(error) as raised:
            filters.clause(wanted)
        if error is UnknownColumnError:
            assert raised.value.known == ["brand", "category", "colours", "price", "size"]


def test_filter_clause_asks_the_catalog_once_per_generation(catalog, monkeypatch):
    _load(catalog, _items())
    asked = []
    original = PgFilters._ask
    monkeypatch.setattr(
        PgFilters, "_ask", lambda self, conn, key: asked.append(key) or original(self, conn, key)
    )
    for _ in range(3):
        assert _passing_via_filter_clause(catalog, {"category": "dress"})
    assert asked == [("empty",), ("has", "category"), ("values", "category")]


def _passing_via_filter_clause(catalog, filters) -> set[str]:
    clause, params = filter_clause(catalog, filters)
    with catalog.connection() as conn:
        query = catalog.sql("SELECT id FROM {items} WHERE ") + clause
        return {item_id for (item_id,) in conn.execute(query, params)}


def test_a_catalog_without_items_filters_nothing(catalog):
    assert filter_clause(catalog, {"anything": "x"}) is None
    assert filter_clause(catalog, None) is None


def test_what_is_known_about_the_catalog_follows_its_commits(catalog):
    _load(catalog, _items()[:3])
    filters = PgFilters(catalog)
    with pytest.raises(UnknownColumnError):
        filters.clause({"brand": "acme"})
    _load(catalog, _items()[5:6])  # the one item with a brand
    assert _passing(catalog, {"brand": "ACME"}) == {"item-05"}
    assert filters.clause({"brand": "acme"}) is not None
