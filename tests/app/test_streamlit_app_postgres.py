"""The web app on a PostgreSQL catalog (a copy of the fake demo index): item queries with the
directory's results, the display settings and facets stored in the database, the catalog page,
a random item, a like that reaches "For you", and an image added through the API (kept in the
database) shown on its card."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

pytest.importorskip("psycopg")
pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest
from test_streamlit_app import block, categories, result_ids

from fakes import FakeEmbedder
from stylefinder.app import APP_SCRIPT, app_command
from stylefinder.app.cache import image_of
from stylefinder.app.markup import unescape
from stylefinder.engine import Engine
from stylefinder.jobs.export import export_catalog
from stylefinder.recommend.display import write_display


@pytest.fixture
def url(fake_demo_index, postgres_url, request) -> str:
    schema = "app_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"
    export_catalog(fake_demo_index[0], url)
    return url


def start(url: str, monkeypatch) -> AppTest:
    _, env = app_command(url)  # the launcher takes the URL and passes it on as it is
    assert env["STYLEFINDER_INDEX"] == url
    monkeypatch.setenv("STYLEFINDER_INDEX", url)
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def test_item_queries_facets_and_catalog_page(url, fake_index, fake_demo_index, monkeypatch):
    write_display(url, {"title": "category", "facets": ["category"]})
    at = start(url, monkeypatch)
    directory = Engine(Engine.open(fake_demo_index[0]).store, embedder=FakeEmbedder())
    at.text_input(key="item_id").set_value("fmnist-test-00017").run()
    assert not at.exception and not at.error
    expected = [r.id for r in directory.similar("fmnist-test-00017", k=5)]
    assert result_ids(at) == expected
    results = block(at, "results")
    titles = {unescape(md.value) for md in results.markdown}
    assert {f"**{r.metadata['category']}**" for r in directory.similar("fmnist-test-00017")} <= (
        titles
    )
    facets = {m.key.removeprefix("filter-"): m for m in at.sidebar.multiselect}
    assert set(facets) == {"category"} and "Bag (100)" in facets["category"].options
    at.multiselect(key="filter-category").set_value(["Bag"]).run()
    assert categories(at) == [] and len(result_ids(at)) == 5  # the title shows the category
    assert all(directory.item(item_id).metadata["category"] == "Bag" for item_id in result_ids(at))
    at.multiselect(key="filter-category").set_value([]).run()

    random_item = next(button for button in at.button if button.label == "Random item")
    random_item.click().run()  # some catalog item becomes the query
    assert at.session_state["query"].item_id in {item.id for item in directory.view.items}
    at.radio(key="page").set_value("Catalog").run()
    assert not at.exception
    assert any(md.value.startswith("**1,000 items** · backbone") for md in at.markdown)
    first_page = result_ids(at, "catalog")
    assert first_page == [item.id for item in directory.browse(limit=20)[0]]


def test_likes_and_an_image_kept_in_the_database(url, fake_index, monkeypatch):
    engine = Engine.open(url)
    photo = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(photo, format="PNG")
    engine.add_item("api-red", photo.getvalue(), {"category": "Bag"})  # as POST /v1/items
    at = start(url, monkeypatch)
    at.text_input(key="item_id").set_value("api-red").run()
    assert not at.exception and not at.error
    assert at.session_state["query"].item_id == "api-red"
    thumbnail = image_of(Engine.open(url), "api-red")  # the query's, as the app shows it
    assert thumbnail is not None, "the image kept in the database is not shown"
    assert Image.open(io.BytesIO(thumbnail)).convert("RGB").getpixel((20, 20)) == (200, 30, 30)
    before = result_ids(at, "for-you")
    first = result_ids(at)[0]
    at.button(key=f"like-results-{first}").click().run()
    assert not at.exception and not at.error
    events = Engine.open(url).events.events(at.session_state["user_id"])  # in the database
    assert [(e.kind, e.item_id) for e in events] == [("like", first)]
    after = result_ids(at, "for-you")
    assert len(after) == 5 and after != before and first not in after
