"""Search results are products: one result per product (its best photo), without products out
of stock unless the query filters on availability; on an index made from a sample feed."""

from __future__ import annotations

import pytest
from feedserver import DATA, PRODUCTS

from stylefinder.engine import Engine
from stylefinder.jobs.feed import sync_feed


@pytest.fixture
def feed_engine(feed_server, fast_options, embedder, tmp_path) -> tuple[Engine, object]:
    text = (DATA / "google_merchant.tsv").read_text()
    url = feed_server.serve_feed("/feed.tsv", text, "text/tab-separated-values")
    index = tmp_path / "index"
    sync_feed(url, index, download=fast_options, embedder=embedder, recognize=False)
    return Engine.open(index, embedder=embedder), index


def products_of(results) -> list[str]:
    return [r.metadata["product_id"] for r in results]


def test_a_photo_query_returns_each_product_once(feed_engine):
    engine, index = feed_engine
    photo = next((index / "feed" / "images").glob("dress-wrap*/2.*"))
    results = engine.recommend(photo, k=len(PRODUCTS))
    found = products_of(results)
    assert len(found) == len(set(found)) == len(PRODUCTS) - 1  # every product but the tote
    assert "bag-tote" not in found  # out of stock
    # the query is a catalog photo (left out), but its product's other photo is not
    assert "dress-wrap#2" not in {r.id for r in results} and "dress-wrap" in found
    asked = engine.recommend(photo, k=len(PRODUCTS), filters={"availability": "out of stock"})
    assert products_of(asked) == ["bag-tote"]


def test_more_like_this_leaves_out_the_items_own_product(feed_engine):
    engine, _ = feed_engine
    results = engine.similar("dress-wrap#1", k=5)
    assert len(results) == 5 and "dress-wrap" not in products_of(results)
    assert len(set(products_of(results))) == 5


def test_words_find_products_once(feed_engine):
    engine, _ = feed_engine
    results = engine.search("dress", k=len(PRODUCTS), expand=False)
    found = products_of(results)
    assert "dress-wrap" in found and len(found) == len(set(found))
    assert "bag-tote" not in products_of(engine.search("tote bag", k=5, expand=False))
