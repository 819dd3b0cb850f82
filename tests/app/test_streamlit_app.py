"""The web app, driven through Streamlit's AppTest: item queries, filters, more-like-this,
a bad upload followed by a good one, the query's category and colours with the same-category
toggle, and the session shopper's likes, dislikes and "For you" section."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block

from imagefactory import bomb_png
from stylefinder import Engine
from stylefinder.app import APP_SCRIPT

ID = re.compile(r"^\*\*(.+)\*\*$")


def start(index_dir: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("STYLEFINDER_INDEX", str(index_dir))
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120)
    at.run()
    assert not at.exception
    return at


@pytest.fixture
def app(app_index, monkeypatch) -> AppTest:
    return start(app_index, monkeypatch)


def block(at: AppTest, key: str) -> Block | None:
    """The container made with `key` ("results", "for-you", "catalog", "recognition")."""
    nodes = [at.main]
    while nodes:
        node = nodes.pop()
        if isinstance(node, Block) and getattr(node.proto, "id", "").endswith(f"-{key}"):
            return node
        nodes.extend(getattr(node, "children", {}).values())
    return None


def result_ids(at: AppTest, grid: str = "results") -> list[str]:
    """Item ids shown in a card grid ("results", "for-you" or "catalog"), in order."""
    node = block(at, grid)
    return [] if node is None else [m.group(1) for c in node.caption if (m := ID.match(c.value))]


def categories(at: AppTest, grid: str = "results") -> list[str]:
    node = block(at, grid)
    captions = [] if node is None else [c.value for c in node.caption]
    return [c.split(": ", 1)[1] for c in captions if c.startswith("category: ")]


def upload(at: AppTest, path: Path, name: str = "photo.png") -> AppTest:
    buffer = io.BytesIO()
    Image.open(path).save(buffer, format="PNG")
    return at.get("file_uploader")[0].set_value((name, buffer.getvalue(), "image/png")).run()


def session_events(index_dir: Path, at: AppTest) -> list[tuple[str, str]]:
    """(kind, item id) of the app session's shopper, oldest first, as stored in the index."""
    events = Engine.open(index_dir).events.events(at.session_state["user_id"])
    return [(e.kind, e.item_id) for e in events]


def test_query_from_a_catalog_item(app: AppTest):
    app.text_input(key="item_id").set_value("fmnist-test-00017").run()
    assert not app.exception and not app.error
    ids = result_ids(app)
    assert len(ids) == 5 and "fmnist-test-00017" not in ids
    assert app.session_state["query"].item_id == "fmnist-test-00017"
    panel = block(app, "recognition")  # recognized from the item's image
    assert panel is not None and any("ImageNet fallback" in c.value for c in panel.caption)
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
    first_page = result_ids(app, "catalog")
    assert len(first_page) == 20
    app.number_input(key="catalog_page").set_value(2).run()
    second_page = result_ids(app, "catalog")
    assert len(second_page) == 20 and not set(second_page) & set(first_page)
    app.button(key=f"find-{second_page[0]}").click().run()
    assert app.session_state["page"] == "Find similar"
    assert app.session_state["query"].item_id == second_page[0]
    assert second_page[0] not in result_ids(app) and len(result_ids(app)) == 5


def test_oversized_upload_and_decompression_bomb(app_index, monkeypatch):
    monkeypatch.setenv("STYLEFINDER_INDEX", str(app_index))
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


def test_upload_shows_its_category_and_colour_chips(app: AppTest, demo):
    path = next(p for p, c in demo.queries if c == "Ankle boot")  # ImageNet: shoes
    upload(app, path, "boot.png")
    assert not app.exception and not app.error
    markdown = [md.value for md in app.markdown]
    top = [v for v in markdown if re.fullmatch(r"\*\*.+ [<>]?\d+%\*\*(  \n.+ [<>]?\d+%){0,2}", v)]
    assert len(top) == 1, markdown  # the top 3 categories, the first in bold
    chips = [v for v in markdown if v.startswith('<div class="colour-chips">')]
    assert len(chips) == 1 and 'class="colour-chip"' in chips[0]
    assert re.search(r"background:rgb\(\d+,\d+,\d+\)", chips[0])
    assert re.search(r"[a-z]+ [<>]?\d+%</span>", chips[0])  # the name and its share
    # The demo index has no classifier and no category_pred column: the toggle cannot apply.
    assert any("ImageNet fallback" in c.value for c in app.caption)
    assert app.toggle(key="same_category_unavailable").disabled
    assert len(result_ids(app)) == 5


def test_same_category_toggle_keeps_one_category(tuned_index, demo, monkeypatch):
    at = start(tuned_index, monkeypatch)
    at.slider(key="k").set_value(20).run()
    path = next(p for p, c in demo.queries if c == "Shirt")
    upload(at, path, "shirt.png")
    assert any("the shop's own classifier" in c.value for c in at.caption)
    top = next(md.value for md in at.markdown if md.value.startswith("**") and "%**" in md.value)
    category = re.match(r"\*\*(.+) [<>]?\d+%\*\*", top).group(1)
    mixed = categories(at)
    assert len(mixed) == 20 and set(mixed) != {category}, (category, mixed)

    at.toggle(key="same_category_toggle").set_value(True).run()
    assert not at.exception and not at.error
    assert categories(at) == [category] * 20
    assert any(f"only category in ['{category}']" in md.value for md in at.markdown)
    at.multiselect(key="filter-category").set_value([category, "Bag"]).run()
    assert categories(at) == [category] * 20  # combined with the sidebar filters
    at.multiselect(key="filter-category").set_value(["Bag"]).run()
    assert result_ids(at) == [] and any("No catalog item" in w.value for w in at.warning)

    at.multiselect(key="filter-category").set_value([]).run()
    at.radio(key="page").set_value("Catalog").run()
    at.radio(key="page").set_value("Find similar").run()
    assert at.toggle(key="same_category_toggle").value  # kept while the toggle was not shown
    at.toggle(key="same_category_toggle").set_value(False).run()
    assert categories(at) == mixed


def test_like_records_an_event_and_changes_for_you(app: AppTest, app_index):
    app.text_input(key="item_id").set_value("fmnist-test-00017").run()
    results, before = result_ids(app), result_ids(app, "for-you")
    assert len(before) == 5
    assert app.button(key="forget").disabled  # nothing to forget yet
    assert app.session_state["user_id"].startswith("web-")

    liked = results[0]
    app.button(key=f"like-results-{liked}").click().run()
    assert not app.exception and not app.error
    assert session_events(app_index, app) == [("like", liked)]
    after = result_ids(app, "for-you")
    assert len(after) == 5 and after != before and liked not in after
    assert result_ids(app) == results  # the query and its results are kept
    assert app.button(key=f"like-results-{liked}").proto.type == "primary"
    assert any("From your 1 like." in c.value for c in app.caption)

    app.button(key=f"like-results-{liked}").click().run()  # already liked: nothing new
    assert session_events(app_index, app) == [("like", liked)]
    second = after[0]
    app.button(key=f"like-for-you-{second}").click().run()
    assert session_events(app_index, app) == [("like", liked), ("like", second)]
    assert second not in result_ids(app, "for-you") and result_ids(app, "for-you") != after


def test_dislike_keeps_an_item_out_of_for_you(app: AppTest, app_index):
    app.text_input(key="item_id").set_value("fmnist-test-00017").run()
    disliked = result_ids(app, "for-you")[0]
    app.button(key=f"dislike-for-you-{disliked}").click().run()
    assert not app.exception
    assert session_events(app_index, app) == [("dislike", disliked)]
    assert disliked not in result_ids(app, "for-you") and len(result_ids(app, "for-you")) == 5
    app.button(key=f"like-results-{result_ids(app)[0]}").click().run()
    assert disliked not in result_ids(app, "for-you")


def test_forget_me_erases_the_session_shopper(app: AppTest, app_index):
    app.text_input(key="item_id").set_value("fmnist-test-00017").run()
    results = result_ids(app)
    app.button(key=f"like-results-{results[1]}").click().run()
    app.button(key=f"dislike-results-{results[2]}").click().run()
    assert len(session_events(app_index, app)) == 2
    assert not app.button(key="forget").disabled

    app.button(key="forget").click().run()
    assert not app.exception
    assert session_events(app_index, app) == []
    fresh = Engine.open(app_index).recommend_for_user(app.session_state["user_id"], k=5)
    assert result_ids(app, "for-you") == [r.id for r in fresh]  # back to the cold start
    assert any(c.value.startswith("Popular, varied picks") for c in app.caption)
    assert app.button(key="forget").disabled
    assert any("2 events" in t.value for t in app.toast)
    assert result_ids(app) == results


def test_catalog_cards_have_like_buttons(app: AppTest, app_index):
    app.radio(key="page").set_value("Catalog").run()
    first = result_ids(app, "catalog")[0]
    app.button(key=f"like-catalog-{first}").click().run()
    assert session_events(app_index, app) == [("like", first)]
    assert app.session_state["page"] == "Catalog"
