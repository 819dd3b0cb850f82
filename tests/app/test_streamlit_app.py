"""The web app, driven through Streamlit's AppTest: item queries, filters, more-like-this,
a bad upload followed by a good one, uploads over the limit, the query's category and colours
with the same-category toggle, the session shopper's likes, dislikes and "For you" section,
cards and facets that follow the index's display settings, and metadata that is never markup."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block

from fakes import FAKE_BACKBONE
from imagefactory import bomb_png
from stylefinder import Engine
from stylefinder.app import APP_SCRIPT, upload_ceiling_mb
from stylefinder.app.markup import unescape
from stylefinder.index.store import IndexStore

# The "More like this" / "Find similar" button of each card, by grid: its key ends with the id.
CARD_BUTTON = {"results": "more-", "for-you": "more-for-you-", "catalog": "find-"}


EVIL = "[Click](http://evil) ![x](http://host/pixel.png)"  # a live link and a tracking pixel
EVIL_COLUMN = "[Shop](http://evil.example)"  # a column name that is Markdown too


@pytest.fixture(scope="module")
def shop_index(fake_demo_index, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo index whose items have shop metadata: a title, a price, a link, a
    year, an internal `category_pred`, a `note` holding Markdown (EVIL) and a column whose
    name is Markdown; display settings name the title, price and link, and hide the year."""
    from stylefinder.recommend.display import write_display

    source, _ = fake_demo_index
    target = tmp_path_factory.mktemp("shop-index") / "index"
    shutil.copytree(source, target)
    store = IndexStore.open(target)
    with store.writer() as writer:
        for n, item in enumerate(writer.base.items):
            category = item.metadata["category"]
            metadata = {
                **item.metadata,
                "name": f"{category} no. {n}",
                "price": f"{10 + n % 40}.99",
                "url": f"https://shop.example/p/{item.id}",
                "year": str(2010 + n % 5),
                "category_pred": category,
                "note": EVIL,
                EVIL_COLUMN: "Sale" if n % 2 else "New",
            }
            writer.put(item.replace(metadata=metadata), None)
    write_display(target, {"title": "name", "price": "price", "link": "url", "hidden": ["year"]})
    return target


@pytest.fixture(autouse=True)
def _fake_model(fake_index):
    """Every test here runs on an index embedded by `FakeEmbedder` (see `fake_index`)."""


def start(index_dir: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("STYLEFINDER_INDEX", str(index_dir))
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120)
    at.run()
    assert not at.exception
    return at


@pytest.fixture
def app(fake_app_index, monkeypatch) -> AppTest:
    return start(fake_app_index, monkeypatch)


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
    node, prefix = block(at, grid), CARD_BUTTON[grid]
    keys = [] if node is None else [b.key for b in node.button]
    return [key.removeprefix(prefix) for key in keys if key.startswith(prefix)]


def categories(at: AppTest, grid: str = "results") -> list[str]:
    node = block(at, grid)
    captions = [] if node is None else [unescape(c.value) for c in node.caption]
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
        md.value.startswith(f"**1,000 items** · backbone **{FAKE_BACKBONE}**")
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


def test_oversized_upload_and_decompression_bomb(fake_app_index, monkeypatch):
    monkeypatch.setenv("STYLEFINDER_INDEX", str(fake_app_index))
    monkeypatch.setenv("STYLEFINDER_MAX_UPLOAD_MB", "0.001")  # 1 kB
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120).run()
    at.get("file_uploader")[0].set_value(("big.png", bytes(5000), "image/png")).run()
    assert not at.exception
    assert any("the limit is 0.001 MB" in unescape(e.value) for e in at.error)
    monkeypatch.setenv("STYLEFINDER_MAX_UPLOAD_MB", "10")
    at.get("file_uploader")[0].set_value(("bomb.png", bomb_png(20_000, 20_000), "image/png")).run()
    assert not at.exception
    assert any("decompression bomb" in e.value for e in at.error)
    assert result_ids(at) == []


def test_upload_shows_its_category_and_colour_chips(app_index, demo, monkeypatch):
    app = start(app_index, monkeypatch)  # the real model: the ImageNet head names the category
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


def test_same_category_toggle_keeps_one_category(fake_tuned_index, demo, monkeypatch):
    at = start(fake_tuned_index, monkeypatch)
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
    assert any(f"only category in {category}" in unescape(md.value) for md in at.markdown)
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


def test_like_records_an_event_and_changes_for_you(app: AppTest, fake_app_index):
    app.text_input(key="item_id").set_value("fmnist-test-00017").run()
    results, before = result_ids(app), result_ids(app, "for-you")
    assert len(before) == 5
    assert app.button(key="forget").disabled  # nothing to forget yet
    assert app.session_state["user_id"].startswith("web-")

    liked = results[0]
    app.button(key=f"like-results-{liked}").click().run()
    assert not app.exception and not app.error
    assert session_events(fake_app_index, app) == [("like", liked)]
    after = result_ids(app, "for-you")
    assert len(after) == 5 and after != before and liked not in after
    assert result_ids(app) == results  # the query and its results are kept
    assert app.button(key=f"like-results-{liked}").proto.type == "primary"
    assert any("From your 1 like." in c.value for c in app.caption)

    app.button(key=f"like-results-{liked}").click().run()  # already liked: nothing new
    assert session_events(fake_app_index, app) == [("like", liked)]
    second = after[0]
    app.button(key=f"like-for-you-{second}").click().run()
    assert session_events(fake_app_index, app) == [("like", liked), ("like", second)]
    assert second not in result_ids(app, "for-you") and result_ids(app, "for-you") != after


def test_dislike_keeps_an_item_out_of_for_you(app: AppTest, fake_app_index):
    app.text_input(key="item_id").set_value("fmnist-test-00017").run()
    disliked = result_ids(app, "for-you")[0]
    app.button(key=f"dislike-for-you-{disliked}").click().run()
    assert not app.exception
    assert session_events(fake_app_index, app) == [("dislike", disliked)]
    assert disliked not in result_ids(app, "for-you") and len(result_ids(app, "for-you")) == 5
    app.button(key=f"like-results-{result_ids(app)[0]}").click().run()
    assert disliked not in result_ids(app, "for-you")


def test_forget_me_erases_the_session_shopper(app: AppTest, fake_app_index):
    app.text_input(key="item_id").set_value("fmnist-test-00017").run()
    results = result_ids(app)
    app.button(key=f"like-results-{results[1]}").click().run()
    app.button(key=f"dislike-results-{results[2]}").click().run()
    assert len(session_events(fake_app_index, app)) == 2
    assert not app.button(key="forget").disabled

    app.button(key="forget").click().run()
    assert not app.exception
    assert session_events(fake_app_index, app) == []
    fresh = Engine.open(fake_app_index).recommend_for_user(app.session_state["user_id"], k=5)
    assert result_ids(app, "for-you") == [r.id for r in fresh]  # back to the cold start
    assert any(c.value.startswith("Popular, varied picks") for c in app.caption)
    assert app.button(key="forget").disabled
    assert any("2 events" in t.value for t in app.toast)
    assert result_ids(app) == results


def test_catalog_cards_have_like_buttons(app: AppTest, fake_app_index):
    app.radio(key="page").set_value("Catalog").run()
    first = result_ids(app, "catalog")[0]
    app.button(key=f"like-catalog-{first}").click().run()
    assert session_events(fake_app_index, app) == [("like", first)]
    assert app.session_state["page"] == "Catalog"


def test_upload_over_the_limit_names_the_limit(app: AppTest):
    uploader = app.get("file_uploader")[0]
    # Streamlit's browser code refuses files over its own cap with a terse message: the cap is
    # above the app's limit, so that files over the limit reach the app and its message.
    assert uploader.proto.max_upload_size_mb == upload_ceiling_mb(10) > 10
    uploader.set_value(("broken.jpg", b"\xff\xd8 not really a jpeg", "image/jpeg")).run()
    assert any("could not be used" in e.value for e in app.error)

    app.get("file_uploader")[0].set_value(("photo.jpg", bytes(12_300_000), "image/jpeg")).run()
    assert not app.exception
    errors = [unescape(e.value) for e in app.error]  # the previous file's error is gone
    assert len(errors) == 1 and errors[0].startswith("photo.jpg is 12.3 MB; the limit is 10 MB.")
    assert result_ids(app) == []
    app.text_input(key="item_id").set_value("fmnist-test-00017").run()  # a new query
    assert not app.error and len(result_ids(app)) == 5
    assert "up to 10 MB" in app.get("file_uploader")[0].proto.label  # said before uploading


# What GFM (remark-gfm, in Streamlit's browser code) turns into links in text once escapes are
# read: URLs, www. addresses and e-mail addresses.
AUTOLINKS = re.compile(r"(?i:https?://|www(?=\.))[-.\w]+|[-.\w+]+@[-\w]+(?:\.[-\w]+)+")


def live_markup(markdown: str) -> str | None:
    """The first character of `markdown` that Markdown reads as part of a link, an image or
    HTML (not backslash-escaped), or an address it makes a link of; None when there is none."""
    if found := AUTOLINKS.search(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)):
        return found.group()
    escaped = False
    for char in markdown:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "[]()!<>":
            return char
    return None


def markdown_bodies(at: AppTest) -> list[str]:
    """Every text the app sent that Streamlit renders as Markdown: markdown, captions, alerts,
    and the labels and tooltips of widgets."""
    bodies = [
        e.value
        for kind in ("markdown", "caption", "error", "warning", "info")
        for e in at.get(kind)
    ]
    for kind in ("multiselect", "toggle", "button", "link_button", "text_input", "file_uploader"):
        bodies += [text for w in at.get(kind) for text in (w.proto.label, w.proto.help) if text]
    return bodies


def test_metadata_is_never_markup(shop_index, monkeypatch):
    at = start(shop_index, monkeypatch)
    at.text_input(key="item_id").set_value("fmnist-test-00017").run()
    at.multiselect(key=f"filter-{EVIL_COLUMN}").set_value(["Sale"]).run()
    assert not at.exception and not at.error
    bodies = markdown_bodies(at)
    at.radio(key="page").set_value("Catalog").run()
    bodies += markdown_bodies(at)

    shown = [unescape(body) for body in bodies]
    from_metadata = [
        b for b, text in zip(bodies, shown, strict=True) if "pixel.png" in text or "evil" in text
    ]
    assert len(from_metadata) > 20
    for body in from_metadata:
        assert live_markup(body) is None, body
    assert f"note: {EVIL}" in shown and f"{EVIL_COLUMN}: Sale" in shown  # as text, on cards
    assert EVIL_COLUMN in shown  # the facet's label
    assert any(f"only {EVIL_COLUMN} in Sale" in text for text in shown)


def test_cards_and_facets_follow_the_display_settings(shop_index, monkeypatch):
    items = {item.id: item.metadata for item in IndexStore.open(shop_index).snapshot().items}
    at = start(shop_index, monkeypatch)
    at.text_input(key="item_id").set_value("fmnist-test-00017").run()
    ids = result_ids(at)
    assert len(ids) == 5
    results = block(at, "results")
    markdown = [unescape(md.value) for md in results.markdown]
    for item_id in ids:
        assert f"**{items[item_id]['name']}**" in markdown  # the title, not the id
        assert items[item_id]["price"] in markdown
    links = [button.proto.url for button in results.link_button]
    assert links == [f"https://shop.example/p/{item_id}" for item_id in ids]
    captions = [unescape(c.value) for c in results.caption]
    details = {c.split(": ", 1)[0] for c in captions if ": " in c}
    # Not the hidden year, not category_pred, not the title, price or link columns again.
    assert details == {"category", "colours", "note", EVIL_COLUMN}
    assert not any(item_id in text for item_id in ids for text in captions + markdown)

    # Facets: the category columns only (not the titles, prices, years, links or notes), each
    # value with its count.
    facets = {m.key.removeprefix("filter-"): m for m in at.sidebar.multiselect}
    assert set(facets) == {"category", "colours", EVIL_COLUMN}
    counts: dict[str, int] = {}
    for metadata in items.values():
        counts[metadata["category"]] = counts.get(metadata["category"], 0) + 1
    assert sorted(facets["category"].options) == sorted(f"{c} ({n:,})" for c, n in counts.items())
    at.multiselect(key="filter-category").set_value(["Bag"]).run()
    assert categories(at) == ["Bag"] * 5


def test_search_by_words_then_with_an_item(app: AppTest):
    app.text_input(key="words").set_value("ankle boots").run()
    assert not app.exception and not app.error
    assert categories(app) == ["Ankle boot"] * 5
    assert any("best matching" in m.value for m in app.markdown)
    # with an item chosen: its look and the words, fused
    app.text_input(key="item_id").set_value("fmnist-test-00017").run()
    assert not app.exception and not app.error
    assert "fmnist-test-00017" not in result_ids(app)
    assert "Ankle boot" in categories(app)
    assert any("matching “ankle boots”" in m.value for m in app.markdown)
    app.text_input(key="words").set_value("the of").run()
    assert not app.exception and "no word to search for" in app.warning[0].value
