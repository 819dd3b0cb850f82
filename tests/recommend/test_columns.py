"""Column summaries (issue 16): kinds, distinct and filled counts, common values, number ranges."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from stylefinder.recommend.columns import ColumnSummary, describe_columns
from stylefinder.types import Item

ARTICLE_TYPES = [f"Type{n:02d}" for n in range(25)]  # more than the 20 values kept
SEASONS = ["Summer", "Winter", "Fall", "Spring"]
COLOURS = ["red", "navy", "white", "black"]


def catalog(n: int, seed: int = 0) -> list[Item]:
    """A fashion-like catalog: free-text titles, categories, prices as numbers or old text."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        price = int(rng.integers(5, 300))
        metadata = {
            "title": f"{rng.choice(SEASONS)} product number {i}",
            "articleType": str(rng.choice(ARTICLE_TYPES)),
            "season": str(rng.choice(SEASONS)),
            "price": [price, float(price) + 0.5, str(price)][i % 3],  # "49": an old index
            "colours": ",".join(rng.choice(COLOURS, size=2, replace=False)),
        }
        if i % 4 == 0:
            metadata["season"] = ""  # an empty value is not counted
        if i % 5 == 0:
            del metadata["articleType"]
        items.append(Item(f"i{i}", f"{i}.png", f"h{i}", metadata_json=json.dumps(metadata)))
    return items


def test_kinds_counts_and_values_of_a_fashion_catalog():
    items = catalog(400)
    summaries = {s.name: s for s in describe_columns(items)}
    assert list(summaries) == ["articleType", "colours", "price", "season", "title"]
    kinds = {name: s.kind for name, s in summaries.items()}
    assert kinds == {
        "articleType": "category",
        "colours": "category",
        "price": "number",
        "season": "category",
        "title": "text",
    }
    metadata = [item.metadata for item in items]
    title = summaries["title"]
    assert (title.distinct, title.filled, title.values, title.low) == (400, 400, [], None)
    article = summaries["articleType"]
    assert article.filled == 320 and article.distinct == 25 and len(article.values) == 20
    counts = [count for _, count in article.values]
    assert counts == sorted(counts, reverse=True)
    for value, count in article.values:
        assert count == sum(m.get("articleType") == value for m in metadata)
    season = summaries["season"]
    assert season.filled == 300 and season.distinct == 4
    assert sum(count for _, count in season.values) == 300
    colours = summaries["colours"]  # a multi-value column: each name counted
    assert colours.distinct == 4 and colours.filled == 400
    assert dict(colours.values) == {c: sum(c in m["colours"] for m in metadata) for c in COLOURS}
    price = summaries["price"]
    numbers = [float(m["price"]) for m in metadata]
    assert (price.low, price.high) == (min(numbers), max(numbers))
    assert price.distinct == len(set(numbers)) and price.values == []


def test_small_catalogs_and_edge_values():
    items = [
        Item("a", "a.png", "h", metadata={"size": "38", "stock": 3, "note": "n/a", "x": None}),
        Item("b", "b.png", "h", metadata={"size": 40.5, "stock": "n/a", "note": " "}),
        Item("c", "c.png", "h", metadata={"size": "  ", "stock": 4, "tags": ["a", "b"]}),
    ]
    summaries = {s.name: s for s in describe_columns(items)}
    size = summaries["size"]
    assert (size.kind, size.distinct, size.filled, size.low, size.high) == (
        "number",
        2,
        2,
        38,
        40.5,
    )
    stock = summaries["stock"]  # one value is not a number: not a number column
    assert stock.kind == "category" and dict(stock.values) == {"3": 1, "4": 1, "n/a": 1}
    assert summaries["note"].filled == 1  # blank text is empty
    assert summaries["x"] == ColumnSummary("x", "text", 0, 0)  # only empty values
    assert summaries["tags"].values == [('["a", "b"]', 1)]  # a JSON list: counted as its JSON
    assert describe_columns([]) == []
    titles = [Item(str(n), "p", "h", metadata={"title": f"title {n}"}) for n in range(30)]
    assert describe_columns(titles)[0].kind == "text"  # all distinct: free text


def test_summaries_are_frozen_and_serialize_as_json():
    summary = describe_columns(catalog(20))[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.kind = "text"  # type: ignore[misc]
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["name"] == summary.name and data["values"] == [list(v) for v in summary.values]
