"""POST /v1/feeds/sync: re-syncing the server's product feed (admin), against the loopback
feed server of tests/catalog/feeds: the summary answered and the engine reloaded, the keys,
one sync at a time, no feed configured, an unreachable feed, and the removal guard that the
API cannot ask about (confirm_removals)."""

from __future__ import annotations

import threading

import pytest

from catalog.feeds.feedserver import FeedServer, status_route
from fakes import FakeEmbedder
from serve.conftest import ADMIN, READER
from stylefinder.jobs.feed import sync_feed
from stylefinder.serve.settings import ServerSettings

ADMIN_HEADERS = {"X-API-Key": ADMIN}
SYNC = "/v1/feeds/sync"


@pytest.fixture
def shop(demo):
    """A loopback feed server (as tests/catalog/feeds' `feed_server`)."""
    server = FeedServer(demo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _feed(server: FeedServer, products: range) -> str:
    lines = ["id,title,price,image_url"]
    lines += [f"p{n},Product {n},{10 + n}.00,{server.image_url(n)}" for n in products]
    return server.serve_feed("/feed.csv", "\n".join(lines) + "\n")


@pytest.fixture
def feed_index(shop, tmp_path):
    """An index synced from a 10-product feed (one photo each) by `FakeEmbedder`."""
    index = tmp_path / "feed-index"
    sync_feed(_feed(shop, range(10)), index, embedder=FakeEmbedder(), recognize=False)
    shop.reset()
    return index


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code and body["message"], body
    return body


def test_sync_answers_the_summary_and_the_engine_sees_it(make_client, shop, feed_index):
    client = make_client(feed_index, feed=shop.url("/feed.csv"))
    shop.routes["/missing.png"] = status_route(404)
    text = (
        "id,title,price,image_url\n"
        + "".join(f"p{n},Product {n},1.00,{shop.image_url(n)}\n" for n in range(12))
        + f"broken,Broken,1.00,{shop.url('/missing.png')}\n"
    )
    shop.serve_feed("/feed.csv", text)
    assert client.get("/v1/items/p11%231", headers=ADMIN_HEADERS).status_code == 404
    response = client.post(SYNC, headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["format"] == "csv" and summary["products"] == 13
    assert (summary["downloaded"], summary["not_modified"], summary["unchanged"]) == (2, 10, 0)
    assert summary["failed"] == {"http 404": 1} and summary["failed_total"] == 1
    assert summary["failures"][0]["url"] == shop.url("/missing.png")
    assert summary["removed"] == 0 and summary["index"]["total"] == 12
    assert summary["index"]["embedded"] == 2
    assert set(shop.bodies("/images/")) == {
        "/images/fmnist-test-00010.png",
        "/images/fmnist-test-00011.png",
    }  # only the new photos were downloaded
    item = client.get("/v1/items/p11%231", headers=ADMIN_HEADERS)  # visible at once
    assert item.status_code == 200 and item.json()["item"]["metadata"]["product_id"] == "p11"


def test_sync_needs_the_admin_key(make_client, shop, feed_index):
    client = make_client(feed_index, feed=shop.url("/feed.csv"), read_key=READER)
    _error(client.post(SYNC), 401, "unauthorized")
    _error(client.post(SYNC, headers={"X-API-Key": READER}), 401, "unauthorized")
    _error(client.post(SYNC, headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
    readonly = make_client(feed_index, feed=shop.url("/feed.csv"), admin_key=None)
    _error(readonly.post(SYNC, headers=ADMIN_HEADERS), 403, "writes_disabled")
    assert shop.bodies() == {}  # no sync started
    ok = client.post(SYNC, headers={"Authorization": f"Bearer {ADMIN}"})
    assert ok.status_code == 200, ok.text


def test_no_feed_configured(client):
    body = _error(client.post(SYNC, headers=ADMIN_HEADERS), 409, "no_feed")
    assert "STYLEFINDER_FEED" in body["message"]


def test_an_unreachable_feed_is_502_and_changes_nothing(make_client, shop, feed_index):
    client = make_client(feed_index, feed=shop.url("/gone.csv"))
    body = _error(client.post(SYNC, headers=ADMIN_HEADERS), 502, "feed_unavailable")
    assert "cannot download the feed" in body["message"]
    assert client.get("/v1/items", headers=ADMIN_HEADERS).json()["total"] == 10


def test_a_second_sync_while_one_runs_is_409(make_client, shop, feed_index):
    client = make_client(feed_index, feed=shop.url("/feed.csv"))
    entered, release = threading.Event(), threading.Event()
    slow = shop.image_bytes(20)

    def held(handler) -> None:  # the new product's photo waits until the test lets it go
        entered.set()
        release.wait(20)
        handler.image(slow)

    shop.routes["/held.png"] = held
    text = "id,title,price,image_url\n" + "".join(
        f"p{n},Product {n},1.00,{shop.image_url(n)}\n" for n in range(10)
    )
    shop.serve_feed("/feed.csv", text + f"held,Held,1.00,{shop.url('/held.png')}\n")
    first: dict = {}
    running = threading.Thread(
        target=lambda: first.update(response=client.post(SYNC, headers=ADMIN_HEADERS))
    )
    running.start()
    try:
        assert entered.wait(20), "the first sync never reached the held photo"
        body = _error(client.post(SYNC, headers=ADMIN_HEADERS), 409, "sync_running")
        assert "running already" in body["message"]
    finally:
        release.set()
        running.join(30)
    response = first["response"]
    assert response.status_code == 200, response.text
    assert response.json()["downloaded"] == 1 and response.json()["index"]["total"] == 11
    again = client.post(SYNC, headers=ADMIN_HEADERS)  # the lock is free again
    assert again.status_code == 200 and again.json()["downloaded"] == 0


def test_removals_beyond_the_guard_need_confirm_removals(make_client, shop, feed_index):
    client = make_client(feed_index, feed=shop.url("/feed.csv"))
    _feed(shop, range(2))  # a feed cut short: 8 of the 10 products would go
    body = _error(client.post(SYNC, headers=ADMIN_HEADERS), 409, "removals_need_confirmation")
    assert "would remove 8 of the catalog's 10 items" in body["message"]
    assert "confirm_removals" in body["message"]
    assert body["details"][0]["would_remove"] == 8 and body["details"][0]["items"] == 10
    assert client.get("/v1/items", headers=ADMIN_HEADERS).json()["total"] == 10
    no = client.post(SYNC, headers=ADMIN_HEADERS, json={"confirm_removals": False})
    _error(no, 409, "removals_need_confirmation")
    yes = client.post(SYNC, headers=ADMIN_HEADERS, json={"confirm_removals": True})
    assert yes.status_code == 200, yes.text
    assert yes.json()["removed"] == 8 and sorted(yes.json()["removed_ids"])[0] == "p2#1"
    assert client.get("/v1/items", headers=ADMIN_HEADERS).json()["total"] == 2


def test_the_body_is_checked(make_client, shop, feed_index):
    client = make_client(feed_index, feed=shop.url("/feed.csv"))
    for bad in ({"confirm_removals": "yes"}, {"confirm_removals": 1}, {"other": True}, []):
        _error(client.post(SYNC, headers=ADMIN_HEADERS, json=bad), 422, "invalid_request")
    text = {**ADMIN_HEADERS, "content-type": "text/plain"}
    _error(client.post(SYNC, headers=text, content=b"confirm"), 415, "unsupported_media_type")
    assert shop.bodies() == {}  # none of them started a sync


def test_the_schema_documents_the_route(client):
    operation = client.get("/openapi.json").json()["paths"][SYNC]["post"]
    assert {"200", "401", "403", "409", "415", "422", "502"} <= set(operation["responses"])
    body = operation["requestBody"]
    assert body["required"] is False
    assert "confirm_removals" in body["content"]["application/json"]["schema"]["properties"]


def test_settings_read_the_feed_from_the_environment(monkeypatch):
    monkeypatch.setenv("STYLEFINDER_FEED", "https://shop.example/feed.xml")
    monkeypatch.setenv("STYLEFINDER_FEED_FORMAT", "google")
    settings = ServerSettings.from_env(index_dir="shop-index")
    assert (settings.feed, settings.feed_format) == ("https://shop.example/feed.xml", "google")
    monkeypatch.setenv("STYLEFINDER_FEED_FORMAT", "excel")
    with pytest.raises(ValueError, match="feed_format"):
        ServerSettings.from_env(index_dir="shop-index")


def test_serve_passes_its_feed_to_the_workers(fake_index, tmp_path, monkeypatch):
    """`stylefinder serve --feed F` puts the feed in the settings every worker reads."""
    import uvicorn

    from stylefinder.cli import main
    from stylefinder.serve.settings import ServerSettings

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.append(kwargs))
    for name in ("FEED", "FEED_FORMAT", "INDEX", "MAX_UPLOAD_MB", "REQUEST_TIMEOUT"):
        monkeypatch.setenv(f"STYLEFINDER_{name}", "")  # what serve() sets is undone after
    feed = tmp_path / "export.csv"
    feed.write_text("Handle,Title,Image Src\n")
    args = ["serve", "--index", str(fake_index), "--feed", str(feed), "--feed-format", "shopify"]
    assert main(args) == 0 and started
    settings = ServerSettings.from_env()
    assert settings.feed == str(feed.resolve()) and settings.feed_format == "shopify"
