"""Indexing a feed end to end, against the loopback server and with the real backbone: every
good image indexed once, every fault reported with its reason, a re-sync that downloads only
what changed (counted on the server), products gone from the feed removed, failures retried."""

from __future__ import annotations

import csv

import pytest
from feedserver import (
    DATA,
    PRODUCTS,
    by_version,
    fail_first,
    flat_png,
    image_route,
    jpeg_of,
    noise_png,
    redirect_route,
    slow_route,
    status_route,
    truncated_route,
)

from stylefinder.catalog.feeds.state import load_state
from stylefinder.errors import RemovalGuardError
from stylefinder.index.store import IndexStore
from stylefinder.jobs.feed import sync_feed

SAMPLE_TYPES = {
    "shopify_products.csv": "text/csv",
    "google_merchant.tsv": "text/tab-separated-values",
    "google_merchant.xml": "application/xml",
    "woocommerce_products.csv": "text/csv",
}


def items_of(index_dir):
    return {item.id: item for item in IndexStore.open(index_dir).snapshot().items}


def image_paths(server) -> dict[str, int]:
    return server.bodies("/images/")


@pytest.mark.parametrize("name", SAMPLE_TYPES)
def test_each_sample_feed_indexes_every_photo_once(
    name, feed_server, fast_options, embedder, tmp_path
):
    url = feed_server.serve_feed(f"/{name}", (DATA / name).read_text(), SAMPLE_TYPES[name])
    index = tmp_path / "index"
    summary = sync_feed(url, index, download=fast_options, embedder=embedder, recognize=False)
    photos = sum(PRODUCTS.values())
    assert summary.downloaded == photos and summary.failed == {}
    assert summary.index.embedded == photos and summary.index.skipped == []
    assert len(summary.fetch.problems) == 1  # the sample's one bad row
    assert set(image_paths(feed_server).values()) == {1}  # each image downloaded once
    items = items_of(index)
    expected = {
        f"{product}#{n}" for product, count in PRODUCTS.items() for n in range(1, count + 1)
    }
    assert set(items) == expected
    main = items["dress-wrap#1"].metadata
    assert main["product_id"] == "dress-wrap" and main["image_position"] == 1
    assert main["title"] == "Wrap dress" and main["colour"] == "red"
    assert main["image_url"] == feed_server.image_url(13)
    assert items["bag-tote#1"].metadata["availability"] == "out of stock"


def fault_feed(server, rows: list[tuple[str, str]]) -> str:
    lines = ["id,title,price,image_url"] + [f"{pid},{pid} title,10.00,{url}" for pid, url in rows]
    return server.serve_feed("/feed.csv", "\n".join(lines) + "\n")


def test_faults_and_a_resync(feed_server, fast_options, embedder, tmp_path):
    s = feed_server
    r = s.routes
    r["/flaky.png"] = fail_first(500, s.image_bytes(40))
    r["/busy.png"] = fail_first(429, s.image_bytes(46), {"Retry-After": "1"})
    r["/slow.png"] = slow_route(s.image_bytes(26), delay=1.5)
    r["/cut.png"] = truncated_route(s.image_bytes(7))
    r["/photo-as-html"] = image_route(jpeg_of(s.image_bytes(10)), "text/html")
    r["/page.jpg"] = image_route(b"<html>sale</html>", "image/jpeg")
    r["/hop1"] = redirect_route(s.image_url(14))
    r["/hop2"] = redirect_route("/hop1")
    r["/loop"] = redirect_route("/loop")
    r["/missing.png"] = status_route(404)
    r["/gone.png"] = status_route(410)
    r["/big.png"] = image_route(noise_png(300))
    r["/bomb.png"] = image_route(flat_png(3000))
    r["/changing.png"] = by_version(
        s, {1: image_route(s.image_bytes(17)), 2: image_route(s.image_bytes(21))}
    )
    r["/later.png"] = by_version(s, {1: status_route(404), 2: image_route(s.image_bytes(3))})
    r["/soon-down.png"] = by_version(s, {1: image_route(s.image_bytes(5)), 2: status_route(503)})
    r["/soon-gone.png"] = by_version(s, {1: image_route(s.image_bytes(15)), 2: status_route(404)})
    good = [(f"good-{n}", s.image_url(n)) for n in (0, 1, 2, 4, 6, 8, 9, 11, 12, 13)]
    faulty = [
        ("flaky", s.url("/flaky.png")),
        ("busy", s.url("/busy.png")),
        ("slow", s.url("/slow.png")),
        ("cut", s.url("/cut.png")),
        ("photo-as-html", s.url("/photo-as-html")),
        ("page", s.url("/page.jpg")),
        ("hops", s.url("/hop2")),
        ("loop", s.url("/loop")),
        ("missing", s.url("/missing.png")),
        ("gone", s.url("/gone.png")),
        ("big", s.url("/big.png")),
        ("bomb", s.url("/bomb.png")),
        ("changing", s.url("/changing.png")),
        ("later", s.url("/later.png")),
        ("soon-down", s.url("/soon-down.png")),
        ("soon-gone", s.url("/soon-gone.png")),
    ]
    feed = fault_feed(s, good + faulty)
    index = tmp_path / "index"
    options = {"download": fast_options, "embedder": embedder, "recognize": False}

    first = sync_feed(feed, index, **options)
    indexed = {"flaky", "busy", "photo-as-html", "hops", "changing", "soon-down", "soon-gone"}
    assert set(items_of(index)) == {f"{pid}#1" for pid, _ in good} | {f"{p}#1" for p in indexed}
    assert first.index.embedded == len(good) + len(indexed)
    assert {
        reason: sorted(u.rsplit("/", 1)[1] for u, _ in urls)
        for reason, urls in first.failed.items()
    } == {
        "timeout": ["slow.png"],
        "truncated": ["cut.png"],
        "not an image": ["page.jpg"],
        "too many redirects": ["loop"],
        "http 404": ["later.png", "missing.png"],
        "http 410": ["gone.png"],
        "too large": ["big.png", "bomb.png"],
    }
    assert first.downloaded == len(good) + len(indexed)
    assert items_of(index)["photo-as-html#1"].path == "photo-as-html/1.jpg"  # sniffed: a JPEG
    assert set(load_state(index / "feed" / "state.json").failures) == {
        s.url(p) for p in ("/slow.png", "/cut.png", "/page.jpg", "/loop", "/missing.png",
                           "/later.png", "/gone.png", "/big.png", "/bomb.png")
    }  # fmt: skip

    # the re-sync: one product left the feed, one image changed, one came back, one broke
    # for a while (503: kept), one is gone for good (404: removed)
    s.version = 2
    s.reset()
    feed = fault_feed(s, good[1:] + faulty)
    second = sync_feed(feed, index, **options)
    downloaded = {p.rsplit("/", 1)[1] for p in s.bodies()} - {"feed.csv"}
    # 200 bodies only for what changed, came back, or keeps failing with a body (retried)
    assert downloaded == {
        "changing.png",
        "later.png",
        "slow.png",
        "cut.png",
        "page.jpg",
        "big.png",
        "bomb.png",
    }
    for _pid, url in good[1:]:
        path = url.removeprefix(s.base)
        assert (s.count(path, 200), s.count(path, 304)) == (0, 1), path
    assert s.count("/flaky.png", 304) == 1 and s.count("/busy.png", 304) == 1
    assert s.count("/missing.png", 404) == 1 and s.count("/gone.png", 410) == 1  # retried
    assert second.fetch.retried == 9 and second.fetch.recovered == 1  # later.png
    assert second.downloaded == 2  # changing, later
    assert second.not_modified == len(good) - 1 + 4  # good, flaky, busy, photo-as-html, hops
    assert second.fetch.kept == 1  # soon-down: 503 after retries, its old copy stays
    assert second.failure_counts["http 503"] == 1
    assert sorted(second.fetch.removals) == ["good-0#1", "soon-gone#1"]
    assert second.removed == 2 and second.index.removed_ids == ["good-0#1", "soon-gone#1"]
    assert second.index.changed == 1 and second.index.embedded == 2  # changing; later is new
    items = items_of(index)
    assert "good-0#1" not in items and "soon-gone#1" not in items
    assert {"later#1", "soon-down#1", "changing#1"} <= set(items)
    assert not (index / "feed" / "images" / "good-0").exists()
    assert not (index / "feed" / "removing").exists()

    # a third run with nothing changed downloads nothing and changes nothing
    s.reset()
    third = sync_feed(feed, index, **options)
    assert third.downloaded == 0 and third.index.embedded == 0 and third.removed == 0
    assert third.index.unchanged == len(items)


def test_the_removal_guard_asks_and_puts_files_back(feed_server, fast_options, embedder, tmp_path):
    rows = [(f"p{n}", feed_server.image_url(n)) for n in range(10)]
    index = tmp_path / "index"
    options = {"download": fast_options, "embedder": embedder, "recognize": False}
    sync_feed(fault_feed(feed_server, rows), index, **options)
    images = index / "feed" / "images"
    before = sorted(p.relative_to(images) for p in images.rglob("*.png"))
    truncated = fault_feed(feed_server, rows[:2])  # a feed cut short: 8 of 10 would go
    asked = []
    with pytest.raises(RemovalGuardError):
        sync_feed(
            truncated, index, confirm=lambda gone, n: asked.append((gone, n)) or False, **options
        )
    assert asked == [([f"p{n}#1" for n in range(2, 10)], 10)]
    assert sorted(p.relative_to(images) for p in images.rglob("*.png")) == before
    assert len(items_of(index)) == 10
    with pytest.raises(RemovalGuardError):
        sync_feed(truncated, index, **options)  # no one to ask
    assert len(items_of(index)) == 10
    summary = sync_feed(truncated, index, confirm=lambda gone, n: True, **options)
    assert summary.removed == 8 and set(items_of(index)) == {"p0#1", "p1#1"}
    assert sorted(p.name for p in images.iterdir()) == ["p0", "p1"]
    assert summary.not_modified == 2


def test_the_metadata_csv_and_state_are_written(feed_server, fast_options, embedder, tmp_path):
    url = feed_server.serve_feed(
        "/g.xml", (DATA / "google_merchant.xml").read_text(), "application/xml"
    )
    index = tmp_path / "index"
    sync_feed(url, index, download=fast_options, embedder=embedder, recognize=False)
    with open(index / "feed" / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(PRODUCTS.values())
    assert rows[0]["id"] == "ankle-boot-classic#1" and rows[0]["path"] == "ankle-boot-classic/1.png"
    assert rows[0]["price"] == "89.00" and rows[0]["currency"] == "EUR"
    state = load_state(index / "feed" / "state.json")
    record = state.images["ankle-boot-classic#2"]
    assert record.etag and record.url == feed_server.image_url(23) and record.position == 2


def test_a_feed_that_cannot_be_downloaded_changes_nothing(
    feed_server, fast_options, embedder, tmp_path
):
    from stylefinder.catalog.feeds.formats import FeedFormatError

    with pytest.raises(FeedFormatError, match="cannot download the feed"):
        sync_feed(
            feed_server.url("/nope.xml"),
            tmp_path / "index",
            download=fast_options,
            embedder=embedder,
        )


def test_reordered_and_shared_photos_are_copied_not_downloaded(feed_server, fast_options, tmp_path):
    from stylefinder.catalog.feeds.sync import fetch_feed

    a, b = feed_server.image_url(0), feed_server.image_url(1)
    index = tmp_path / "index"
    fetch_feed(
        feed_server.serve_feed("/f.json", f'[{{"id": "p", "images": ["{a}", "{b}"]}}]'),
        index,
        options=fast_options,
    )
    feed_server.reset()
    swapped = f'[{{"id": "p", "images": ["{b}", "{a}"]}}, {{"id": "q", "images": ["{a}"]}}]'
    fetched = fetch_feed(feed_server.serve_feed("/f.json", swapped), index, options=fast_options)
    assert feed_server.bodies("/images/") == {}  # 304s only
    assert fetched.not_modified == 2 and fetched.downloaded == 0
    images = index / "feed" / "images"
    assert (images / "p" / "1.png").read_bytes() == feed_server.image_bytes(1)
    assert (images / "p" / "2.png").read_bytes() == feed_server.image_bytes(0)
    assert (images / "q" / "1.png").read_bytes() == feed_server.image_bytes(0)
