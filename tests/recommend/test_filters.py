"""Metadata filters: the column codes give what a pass over the items gives, and an engine's
cached columns follow commits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stylefinder.index.store import IndexStore
from stylefinder.recommend.engine import Engine
from stylefinder.recommend.filters import MULTI_VALUE_COLUMNS, MetadataColumns, parse_filters
from stylefinder.types import EmbeddingSpace, Item, load_metadata

CATEGORIES = ["Dress", "Coat", "Bag", "Dress,Coat"]  # a comma in a single-value column is kept
COLOURS = ["navy", "white", "navy,white", "red,navy,black", "black"]


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
    for column, wanted in filters.items():
        allowed = {wanted} if isinstance(wanted, str) else set(wanted)
        if not allowed:
            continue
        value = item.metadata.get(column)
        if value is None:
            return False
        values = value.split(",") if column in MULTI_VALUE_COLUMNS else [value]
        if not allowed.intersection(values):
            return False
    return True


def test_column_codes_filter_like_a_pass_over_the_items():
    items = random_items(3000, seed=1)
    columns = MetadataColumns(items)
    cases = [
        {},
        {"category": "Dress"},
        {"category": ["Dress", "Bag"]},
        {"category": "Dress,Coat"},
        {"category": []},  # no values: no restriction
        {"colours": "navy"},
        {"colours": ["black", "white"]},
        {"category": "Coat", "colours": "red"},
        {"category": "Shoe"},  # a value no item has
        {"season": "winter"},  # a column no item has
    ]
    for filters in cases:
        expected = [passes(item, filters) for item in items]
        assert columns.mask(filters).tolist() == expected, filters
    assert 0 < columns.mask({"colours": "navy"}).sum() < len(items)


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
