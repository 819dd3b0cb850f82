"""The web app, driven through Streamlit's AppTest: item queries, filters, more-like-this,
and a bad upload followed by a good one."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from imagefactory import bomb_png
from stylefinder.app import APP_SCRIPT

ID = re.compile(r"^\*\*(.+)\*\*$")


@pytest.fixture
def app(demo_index, monkeypatch) -> AppTest:
    index_dir, _ = demo_index
    monkeypatch.setenv("STYLEFINDER_INDEX", str(index_dir))
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120)
    at.run()
    assert not at.exception
    return at


def result_ids(at: AppTest) -> list[str]:
    """Item ids shown in the results grid, in order."""
    return [m.group(1) for c in at.caption if (m := ID.match(c.value))]


def categories(at: AppTest) -> list[str]:
    return [c.value.split(": ", 1)[1] for c in at.caption if c.value.startswith("category: ")]


def test_query_from_a_catalog_item(app: AppTest):
    app.text_input(key="item_id").set_value("fmnist-test-00017").run()
    assert not app.exception and not app.error
    ids = result_ids(app)
    assert len(ids) == 5 and "fmnist-test-00017" not in ids
    assert app.session_state["query"].item_id == "fmnist-test-00017"
    app.slider(key="k").set_value(8).run()
    assert len(result_ids(app)) == 8


def test_filter_is_applied_before_ranking(app: AppTest):
    app.text_input(key="item_id").set_value("fmnist-test-00017").run()
    app.multiselect(key="filter-category").set_value(["Bag"]).run()
    assert not app.exception
    assert len(result_ids(app)) == 5
    assert categories(app) == ["Bag"] * 5


def test_more_like_this_makes_a_result_the_new_query(app: AppTest):
    app.text_input(key="item_id").set_value("fmnist-test-00017").run()
    first = result_ids(app)[2]
    app.button(key=f"more-{first}").click().run()
    assert not app.exception
    assert app.session_state["query"].item_id == first
    ids = result_ids(app)
    assert len(ids) == 5 and first not in ids


def test_bad_upload_then_good_upload(app: AppTest, demo):
    uploader = app.get("file_uploader")[0]
    uploader.set_value(("broken.jpg", b"\xff\xd8 not really a jpeg", "image/jpeg")).run()
    assert not app.exception
    assert any("could not be used" in e.value for e in app.error)
    assert result_ids(app) == []

    path, _ = demo.queries[0]
    buffer = io.BytesIO()
    Image.open(path).save(buffer, format="PNG")
    app.get("file_uploader")[0].set_value(("shoe.png", buffer.getvalue(), "image/png")).run()
    assert not app.exception and not app.error
    assert len(result_ids(app)) == 5
    assert app.session_state["query"].label == "shoe.png"


def test_catalog_page_pages_through_items(app: AppTest):
    app.radio(key="page").set_value("Catalog").run()
    assert not app.exception
    assert any(
        md.value.startswith("**1,000 items** · backbone **efficientnet-lite0**")
        for md in app.markdown
    )
    first_page = result_ids(app)
    assert len(first_page) == 20
    app.number_input(key="catalog_page").set_value(2).run()
    second_page = result_ids(app)
    assert len(second_page) == 20 and not set(second_page) & set(first_page)
    app.button(key=f"find-{second_page[0]}").click().run()
    assert app.session_state["page"] == "Find similar"
    assert app.session_state["query"].item_id == second_page[0]
    assert second_page[0] not in result_ids(app) and len(result_ids(app)) == 5


def test_oversized_upload_and_decompression_bomb(demo_index, monkeypatch):
    index_dir, _ = demo_index
    monkeypatch.setenv("STYLEFINDER_INDEX", str(index_dir))
    monkeypatch.setenv("STYLEFINDER_MAX_UPLOAD_MB", "0.001")  # 1 kB
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120).run()
    at.get("file_uploader")[0].set_value(("big.png", bytes(5000), "image/png")).run()
    assert not at.exception
    assert any("the limit is 0.001 MB" in e.value for e in at.error)
    monkeypatch.setenv("STYLEFINDER_MAX_UPLOAD_MB", "10")
    at.get("file_uploader")[0].set_value(("bomb.png", bomb_png(20_000, 20_000), "image/png")).run()
    assert not at.exception
    assert any("decompression bomb" in e.value for e in at.error)
    assert result_ids(at) == []
