"""Metadata filters: the column codes give what a pass over the items gives, an engine's cached
columns follow commits, unknown columns are named, and text, comma lists, numbers and ranges
compare as the module's docstring says (issue 16, points 6 and 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stylefinder.engine import Engine
from stylefinder.errors import BadFilterError, UnknownColumnError
from stylefinder.index.store import IndexStore
from stylefinder.recommend.filters import (
    MULTI_VALUE_COLUMNS,
    MetadataColumns,
    Range,
    allowed_rows,
    column_values,
    parse_filters,
)
from stylefinder.types import EmbeddingSpace, Item, load_metadata

CATEGORIES = ["Dress", "Coat", "Bag", "Dress,Coat", "dress"]  # a comma in a value is kept whole
COLOURS = ["navy", "white", "navy,white", "red,navy,black", "black", "Navy"]


def random_items(n: int, seed: int) -> list[Item]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        metadata = {}
        if rng.random() < 0.8:  # some items lack a column
            metadata["category"] = str(rng.choice(CATEGORIES))
        if rng.random() < 0.8:
            metadata["colours"] = str(rng.choice(COLOURS))
        items.append(Item(f"i{i}", f"{i}.png", f"h{i}", metadata=metadata))
    return items


def passes(item: Item, filters: dict) -> bool:
    """The documented rule for text filters, item by item: any allowed alternative (a text's
    comma-separated parts, or the whole text) equals the value without regard to case."""
    for column, wanted in filters.items():
        texts = [wanted] if isinstance(wanted, str) else list(wanted)
        if not texts:
            continue
        allowed = set()
        for text in texts:
            allowed.add(text.lower())
            allowed.update(part.strip().lower() for part in text.split(","))
        value = item.metadata.get(column)
        if value is None:
            return False
        values = value.split(",") if column in MULTI_VALUE_COLUMNS else [value]
        if not allowed.intersection(v.lower() for v in values):
            return False
    return True


def numbered(*rows: dict) -> list[Item]:
    return [Item(f"i{n}", f"{n}.png", f"h{n}", metadata=dict(row)) for n, row in enumerate(rows)]


def test_column_codes_filter_like_a_pass_over_the_items():
    items = random_items(3000, seed=1)
    columns = MetadataColumns(items)
    cases = [
        {},
        {"category": "Dress"},
        {"category": "DRESS"},
        {"category": ["Dress", "Bag"]},
        {"category": "Dress,Coat"},
        {"category": "Bag, Coat"},
        {"category": []},  # no values: no restriction
        {"colours": "navy"},
        {"colours": ["black", "white"]},
        {"colours": "red,white"},
        {"category": "Coat", "colours": "red"},
        {"category": "Shoe"},  # a value no item has
    ]
    for filters in cases:
        expected = [passes(item, filters) for item in items]
        assert columns.mask(filters).tolist() == expected, filters
    assert 0 < columns.mask({"colours": "navy"}).sum() < len(items)


def test_a_column_no_item_has_is_an_error_that_lists_the_columns():
    items = numbered({"category": "Dress", "price": 49}, {"colours": "red", "note": None})
    columns = MetadataColumns(items)
    with pytest.raises(UnknownColumnError) as raised:
        columns.mask({"nosuch": "x"})
    assert str(raised.value) == (
        "unknown filter column 'nosuch'; the index has: category, colours, note, price"
    )
    assert raised.value.known == ["category", "colours", "note", "price"]
    with pytest.raises(UnknownColumnError, match="the index has: category, colours"):
        allowed_rows(items, {"category": "Dress", "Category": "Dress"})
    assert columns.mask({"note": "x"}).tolist() == [False, False]  # held by an item, as null
    assert columns.mask({"nosuch": []}).all()  # no values: no restriction, as before
    assert allowed_rows([], {"nosuch": "x"}).tolist() == []  # no items: nothing to filter


def test_the_engine_names_an_unknown_column(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", EmbeddingSpace("net", "gem", "w", 4))
    with store.writer() as writer:
        for i, vector in enumerate(np.eye(4, dtype=np.float32)):
            writer.put(Item(f"i{i}", f"{i}.png", f"h{i}", metadata={"category": "Dress"}), vector)
    engine = Engine(store)
    with pytest.raises(UnknownColumnError, match="'nosuchcol'; the index has: category"):
        engine.browse(filters=parse_filters(["nosuchcol=x"], "="))
    with pytest.raises(UnknownColumnError):
        engine.search_vector(np.eye(4, dtype=np.float32)[0], 2, filters={"nosuchcol": "x"})
    assert engine.browse(filters={"category": "dress"})[1] == 4


def test_text_compares_without_regard_to_case():
    items = numbered({"category": "Dress"}, {"category": "dress "}, {"category": "Coat"})
    assert allowed_rows(items, {"category": "dress"}).tolist() == [True, True, False]
    assert allowed_rows(items, {"category": ["COAT"]}).tolist() == [False, False, True]
    colours = numbered({"colours": "Red,navy"}, {"colours": "white"})
    assert allowed_rows(colours, {"colours": "red"}).tolist() == [True, False]


def test_comma_lists_mean_any_of_in_every_column():
    items = numbered(
        {"articleType": "Dresses"},
        {"articleType": "Skirts"},
        {"articleType": "Tops"},
        {"articleType": "Dresses,Skirts"},  # a value holding a comma: matched when given whole
    )
    cli = parse_filters(["articleType=Dresses,Skirts"], "=")
    assert allowed_rows(items, cli).tolist() == [True, True, False, True]
    assert allowed_rows(items, {"articleType": "skirts, tops"}).tolist() == [
        False,
        True,
        True,
        False,
    ]
    assert allowed_rows(items, {"articleType": ["Tops", "Dresses,x"]}).tolist() == [
        True,
        False,
        True,
        False,
    ]


def test_numbers_compare_as_numbers_whatever_their_type():
    items = numbered(
        {"price": 49}, {"price": 49.0}, {"price": "49"}, {"price": "49.5"}, {"price": 50}
    )
    expected = [True, True, True, False, False]
    for wanted in (49, 49.0, "49", "49.0", ["49"], [49]):
        assert allowed_rows(items, {"price": wanted}).tolist() == expected, wanted
    assert allowed_rows(items, parse_filters(["price=49.5"], "=")).tolist() == [
        False,
        False,
        False,
        True,
        False,
    ]


def test_parse_filters_reads_ranges_with_either_separator():
    cli = ["price<50", "price<=50", "price>20", "price>=20", "price=20..80", "price=..80"]
    assert parse_filters([*cli, "price=20.."], "=") == {
        "price": ["<50", "<=50", ">20", ">=20", "20..80", "..80", "20.."]
    }
    api = ["price:<50", "price:20..80", "price<=50", "category:Bag", "note:a=b"]
    assert parse_filters(api, ":") == {
        "price": ["<50", "20..80", "<=50"],
        "category": ["Bag"],
        "note": ["a=b"],
    }
    assert parse_filters(["category=Bag", "category=Dress"], "=") == {"category": ["Bag", "Dress"]}
    for bad in ("category", "=Bag", "<50", " :x"):
        with pytest.raises(BadFilterError, match="COLUMN"):
            parse_filters([bad], ":" if ":" in bad else "=")


def test_ranges_on_number_columns():
    prices = [5, 19.99, 20, "35", 50, 80.0, "80.5", 120]
    items = numbered(*({"price": p} for p in prices), {"category": "no price"})

    def kept(texts: list[str], separator: str = "=") -> list:
        rows = allowed_rows(items, parse_filters(texts, separator))
        return [p for p, row in zip(prices, rows, strict=False) if row]

    assert kept(["price<50"]) == [5, 19.99, 20, "35"]
    assert kept(["price<=50"]) == [5, 19.99, 20, "35", 50]
    assert kept(["price>80"]) == ["80.5", 120]
    assert kept(["price>=80"]) == [80.0, "80.5", 120]
    assert kept(["price=20..80"]) == [20, "35", 50, 80.0]
    assert kept(["price=..20"]) == [5, 19.99, 20]
    assert kept(["price=80.."]) == [80.0, "80.5", 120]
    assert kept(["price:<20"], ":") == kept(["price:..19.99"], ":") == [5, 19.99]
    assert kept(["price<10", "price>100"]) == [5, 120]  # a repeated column: any of
    assert kept(["price=<10,>=100"]) == [5, 120]  # a comma list of ranges
    assert kept(["price=19.99,20..35"]) == [19.99, 20, "35"]
    assert not allowed_rows(items, {"price": "<50"})[-1]  # no price: no pass
    in_python = {
        Range(low=20, high=80): [20, "35", 50, 80.0],
        Range(low=20, high=80, low_inclusive=False, high_inclusive=False): ["35", 50],
        Range(high=19.99): [5, 19.99],
        Range(): prices,
    }
    for wanted, expected in in_python.items():
        rows = allowed_rows(items, {"price": wanted})
        assert [p for p, row in zip(prices, rows, strict=False) if row] == expected, wanted
    rows = allowed_rows(items, {"price": [Range(high=5), 120, "50"]})
    assert [p for p, row in zip(prices, rows, strict=False) if row] == [5, 50, 120]


def test_unreadable_ranges_and_ranges_on_text_columns_are_bad_filters():
    items = numbered(
        {"price": 49, "size": "M", "stock": "12", "age": "2..3"},
        {"price": "15", "size": "L", "stock": "n/a", "age": "4..5"},
    )
    columns = MetadataColumns(items)
    for text in ("price<abc", "price>=", "price=..", "price=1..x", "price=80..20"):
        with pytest.raises(BadFilterError, match="range"):
            columns.mask(parse_filters([text], "="))
    with pytest.raises(BadFilterError, match=r"'size'.*text column .*'M'"):
        columns.mask({"size": "<50"})
    with pytest.raises(BadFilterError, match=r"text column .*'n/a'"):
        columns.mask({"stock": "10..20"})  # a number column only when every value is a number
    assert columns.mask({"stock": "12"}).tolist() == [True, False]
    assert columns.mask({"age": "2..3"}).tolist() == [True, False]  # a value an item holds
    for bad in ({"low": "20"}, {"high": True}, {"low": 5, "high": 1}, {"low": float("nan")}):
        with pytest.raises(BadFilterError):
            Range(**bad)
    for bad in ({"x": 1}, None, True):
        with pytest.raises(BadFilterError, match="wants text, a number, a Range"):
            columns.mask({"price": bad})


def test_column_values_list_numbers_as_text_in_order():
    items = numbered({"size": 40, "colours": "red,navy"}, {"size": "8"}, {"size": 12.5})
    assert column_values(items) == {"colours": ["navy", "red"], "size": ["8", "12.5", "40"]}


def test_engine_filters_follow_commits(tmp_path: Path):
    store = IndexStore.create(tmp_path / "ix", EmbeddingSpace("net", "gem", "w", 8))
    vectors = np.eye(8, dtype=np.float32)
    with store.writer() as writer:
        for i, vector in enumerate(vectors):
            colour = "navy" if i < 4 else "white"
            writer.put(Item(f"i{i}", f"{i}.png", f"h{i}", metadata={"colours": colour}), vector)
    engine = Engine(store)
    navy = parse_filters(["colours=navy"], "=")
    assert sorted(r.id for r in engine.search_vector(vectors[0], 8, filters=navy)) == [
        "i0",
        "i1",
        "i2",
        "i3",
    ]
    with store.writer() as writer:  # i7 turns navy, i0 loses its colours
        writer.put(Item("i7", "7.png", "h7", metadata={"colours": "white,navy"}), None)
        writer.put(Item("i0", "0.png", "h0", metadata={}), None)
    assert engine.reload()
    found = sorted(r.id for r in engine.search_vector(vectors[0], 8, filters=navy))
    assert found == ["i1", "i2", "i3", "i7"]
    assert engine.browse(filters=navy)[1] == 4


def test_metadata_parsed_in_one_pass_is_what_each_item_parses():
    rows = ['{"category": "Dress"}', "", '{"colours": "navy,white", "note": "\\u00e9"}', "{}"]
    bulk = [Item(f"i{n}", "p", "h", metadata_json=text) for n, text in enumerate(rows)]
    one_by_one = [Item(f"i{n}", "p", "h", metadata_json=text) for n, text in enumerate(rows)]
    load_metadata(bulk)
    assert [item._metadata for item in bulk] == [item.metadata for item in one_by_one]
    broken = [Item("a", "p", "h", metadata_json='{"a": "1"}, {"b": "2"}'), Item("b", "p", "h")]
    load_metadata(broken)  # the malformed row is left to raise when it is read, as before
    assert broken[1].metadata == {}
    with pytest.raises(ValueError):
        broken[0].metadata  # noqa: B018 - reading it is the test


def test_a_colour_family_or_a_shops_word_finds_the_names_it_stands_for():
    items = numbered(
        {"colours": "navy"},
        {"colours": "blue,white"},
        {"colours": "turquoise"},
        {"colours": "grey"},
        {"colours": "red,navy"},
        {"category": "Dress"},
    )

    def found(wanted) -> list[str]:
        return [
            i.id
            for i, ok in zip(items, allowed_rows(items, {"colours": wanted}), strict=True)
            if ok
        ]

    assert found("blue") == ["i0", "i1", "i2", "i4"]  # the family: navy and turquoise too
    assert found("Navy Blue") == ["i0", "i4"] == found("navy")  # the shop's word, the name
    assert found("charcoal") == ["i3"] and found("off white") == ["i1"]
    assert found("light blue,maroon") == ["i1", "i4"]  # each word of a list
    assert found("plaid") == []  # a word no vocabulary knows matches only itself
    rows = allowed_rows(
        [Item("x", "x.png", "h", metadata={"category": "blue"})], {"category": "navy"}
    )
    assert not rows.any()  # only `colours` reads colour words
