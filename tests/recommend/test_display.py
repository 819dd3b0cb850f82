"""Display settings: stored in the index, checked against its columns, read from the CLI's
KEY=VALUE texts; the fields of a card; the facets offered as filters, with their counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stylefinder.errors import UnknownColumnError
from stylefinder.index.store import IndexStore
from stylefinder.recommend.display import (
    STATE_KEY,
    DisplaySettings,
    display_fields,
    facet_columns,
    facet_values,
    facets,
    parse_display_assignments,
    read_display,
    safe_link,
    write_display,
)
from stylefinder.types import EmbeddingSpace, Item

TYPES = ["Dresses", "Coats", "Dresses", "Bags", "Dresses", "Coats"] * 4


def shop_items() -> list[Item]:
    """24 items: a category column, free text, years, prices, links, colours and an internal
    `category_pred` column."""
    items = []
    for n, kind in enumerate(TYPES):
        metadata = {
            "articleType": kind,
            "productDisplayName": f"{kind} number {n} in soft cotton",
            "year": str(2010 + n % 7),
            "price": 20 + n,
            "url": f"https://shop.example/p/{n}",
            "colours": "red,navy" if n % 2 else "navy",
            "category_pred": kind,
        }
        items.append(Item(f"sku-{n}", f"{n}.png", f"h{n}", metadata=metadata))
    return items


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    """A real index directory holding the shop items (4-d vectors)."""
    store = IndexStore.create(tmp_path / "index", EmbeddingSpace("test", "avg", "none", 4))
    rng = np.random.default_rng(0)
    with store.writer() as writer:
        for item in shop_items():
            writer.put(item, rng.normal(size=4))
    return store.directory


def stored(index_dir: Path) -> DisplaySettings:
    return read_display(IndexStore.open(index_dir).snapshot().state)


def test_settings_round_trip_through_json():
    settings = DisplaySettings("name", "price", "url", ("type", "colour"), ("year",))
    data = json.loads(json.dumps(settings.to_dict()))
    assert DisplaySettings.from_dict(data) == settings
    assert DisplaySettings.from_dict({}) == DisplaySettings()
    assert DisplaySettings.from_dict({"facets": []}).facets == ()  # no facets, not automatic
    with pytest.raises(ValueError, match="unknown display settings"):
        DisplaySettings.from_dict({"titel": "name"})
    with pytest.raises(ValueError, match="wants a column name"):
        DisplaySettings.from_dict({"title": 3})


def test_read_display_falls_back_to_the_defaults():
    assert read_display({}) == DisplaySettings()
    assert read_display({STATE_KEY: "{not json"}) == DisplaySettings()
    assert read_display({STATE_KEY: '{"title": "name"}'}).title == "name"


def test_write_display_stores_checks_and_updates(index_dir: Path):
    written = write_display(index_dir, {"title": "productDisplayName", "hidden": ("year",)})
    assert stored(index_dir) == written == DisplaySettings("productDisplayName", hidden=("year",))
    raw = IndexStore.open(index_dir).snapshot().state[STATE_KEY]
    assert json.loads(raw)["title"] == "productDisplayName"

    write_display(index_dir, {"price": "price", "link": "url"})  # an update keeps the rest
    assert stored(index_dir) == DisplaySettings(
        "productDisplayName", "price", "url", hidden=("year",)
    )
    write_display(index_dir, DisplaySettings(facets=("articleType",)))  # a whole replacement
    assert stored(index_dir) == DisplaySettings(facets=("articleType",))


def test_write_display_rejects_an_unknown_column(index_dir: Path):
    write_display(index_dir, {"title": "productDisplayName"})
    generation = IndexStore.open(index_dir).generation()
    with pytest.raises(UnknownColumnError, match="no metadata column 'colour'") as caught:
        write_display(index_dir, {"facets": ("articleType", "colour")})
    assert "articleType" in caught.value.known and "colours" in caught.value.known
    assert "colours" in str(caught.value)  # the message lists the known columns too
    assert IndexStore.open(index_dir).generation() == generation  # nothing written
    assert stored(index_dir) == DisplaySettings(title="productDisplayName")


def test_parse_display_assignments():
    texts = [
        "title=productDisplayName",
        "price=price",
        "link=url",
        "hidden=year,season",
        "facets=articleType, baseColour",
    ]
    assert parse_display_assignments(texts) == {
        "title": "productDisplayName",
        "price": "price",
        "link": "url",
        "hidden": ("year", "season"),
        "facets": ("articleType", "baseColour"),
    }
    assert parse_display_assignments(["facets=auto", "facets="]) == {"facets": ()}
    assert parse_display_assignments(["facets=auto", "title="]) == {"facets": None, "title": None}
    for bad in ("title", "colour=red"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_display_assignments([bad])


def test_display_fields_of_a_card():
    metadata = shop_items()[3].metadata
    plain = display_fields(metadata, DisplaySettings())
    assert plain["title"] is None and plain["price"] is None and plain["link"] is None
    assert "category_pred" not in plain["details"]  # internal: not shown by default
    assert plain["details"]["price"] == "23" and plain["details"]["articleType"] == "Bags"

    settings = DisplaySettings("productDisplayName", "price", "url", hidden=("year",))
    fields = display_fields(metadata, settings)
    assert fields["title"] == "Bags number 3 in soft cotton"
    assert fields["price"] == "23" and fields["link"] == "https://shop.example/p/3"
    assert fields["details"] == {"articleType": "Bags", "colours": "red,navy"}
    configured = display_fields(metadata, DisplaySettings(title="category_pred"))
    assert configured["title"] == "Bags"  # shown once configured
    hidden = display_fields(metadata, DisplaySettings(title="articleType", hidden=("articleType",)))
    assert hidden["title"] is None and "articleType" not in hidden["details"]


def test_only_http_links_are_links():
    settings = DisplaySettings(link="url")
    for bad in ("javascript:alert(1)", "/p/3", "http://", "https://evil example/x", "data:x"):
        fields = display_fields({"url": bad}, settings)
        assert fields["link"] is None and fields["details"] == {"url": bad}, bad
        assert safe_link(bad) is None
    assert safe_link("HTTPS://shop.example/p?q=1") == "HTTPS://shop.example/p?q=1"


def test_automatic_facets_are_small_category_columns():
    items = shop_items()
    # Not the free text, the years (numbers), the prices, the links or category_pred.
    assert facet_columns(items, DisplaySettings()) == ["articleType", "colours"]
    assert facet_columns(items, DisplaySettings(hidden=("colours",))) == ["articleType"]
    assert facet_columns(items, DisplaySettings(title="articleType")) == ["colours"]
    one_value = [Item("a", "a.png", "h", metadata={"k": "x"}), Item("b", "b.png", "h")]
    assert facet_columns(one_value, DisplaySettings()) == []


def test_configured_facets_keep_their_order():
    items = shop_items()
    settings = DisplaySettings(facets=("year", "articleType", "gone"))
    assert facet_columns(items, settings) == ["year", "articleType"]  # "gone": no item has it
    assert facet_columns(items, DisplaySettings(facets=())) == []
    assert facets(items, DisplaySettings(facets=("category_pred",))) == {
        "category_pred": [("Dresses", 12), ("Coats", 8), ("Bags", 4)]
    }


def test_facet_values_count_items():
    items = shop_items()
    values = facet_values(items, ["articleType", "colours", "price"])
    assert values["articleType"] == [("Dresses", 12), ("Coats", 8), ("Bags", 4)]
    assert values["colours"] == [("navy", 24), ("red", 12)]  # each name once per item
    assert values["price"][0] == ("20", 1) and len(values["price"]) == 24  # numbers as text
