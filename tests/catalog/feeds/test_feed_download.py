"""The downloader against a real loopback server: every fault ends in its reason, never an
exception; retries, Retry-After, redirects, limits and conditional GETs work."""

from __future__ import annotations

import threading
import time

import pytest
from feedserver import (
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
    unsized_route,
)

from stylefinder.catalog.feeds.download import (
    FAILURE_CONNECTION,
    FAILURE_NOT_IMAGE,
    FAILURE_REDIRECTS,
    FAILURE_TIMEOUT,
    FAILURE_TOO_LARGE,
    FAILURE_TRUNCATED,
    Downloader,
    Validators,
    sniff_image,
)


@pytest.fixture
def downloader(fast_options):
    with Downloader(fast_options) as downloader:
        yield downloader


def test_a_good_image_comes_with_its_hash_and_validators(feed_server, downloader):
    fetched = downloader.fetch(feed_server.image_url(0))
    assert fetched.status == "downloaded", fetched.detail
    assert fetched.extension == "png"
    assert fetched.data == feed_server.image_bytes(0)
    assert fetched.etag and fetched.last_modified
    assert len(fetched.sha256) == 64


def test_a_conditional_get_is_answered_304(feed_server, downloader):
    first = downloader.fetch(feed_server.image_url(0))
    again = downloader.fetch(feed_server.image_url(0), Validators(first.etag, first.last_modified))
    assert again.status == "not_modified"
    assert again.data is None
    path = "/images/fmnist-test-00000.png"
    assert (feed_server.count(path, 200), feed_server.count(path, 304)) == (1, 1)


@pytest.mark.parametrize("status", [404, 410, 403])
def test_client_errors_fail_at_once(feed_server, downloader, status):
    feed_server.routes["/x.png"] = status_route(status)
    fetched = downloader.fetch(feed_server.url("/x.png"))
    assert (fetched.status, fetched.reason, fetched.http_status) == (
        "failed",
        f"http {status}",
        status,
    )
    assert feed_server.count("/x.png", status) == 1  # not retried


def test_a_500_then_success_is_retried(feed_server, downloader):
    feed_server.routes["/flaky.png"] = fail_first(500, feed_server.image_bytes(1))
    fetched = downloader.fetch(feed_server.url("/flaky.png"))
    assert fetched.status == "downloaded"
    assert fetched.attempts == [500, 200]


def test_a_lasting_5xx_fails_after_the_retries(feed_server, downloader):
    feed_server.routes["/down.png"] = status_route(503)
    fetched = downloader.fetch(feed_server.url("/down.png"))
    assert (fetched.status, fetched.reason) == ("failed", "http 503")
    assert "after 2 retries" in fetched.detail
    assert feed_server.count("/down.png", 503) == 3


def test_429_waits_for_retry_after(feed_server, downloader):
    feed_server.routes["/busy.png"] = fail_first(
        429, feed_server.image_bytes(2), {"Retry-After": "1"}
    )
    started = time.perf_counter()
    fetched = downloader.fetch(feed_server.url("/busy.png"))
    assert fetched.status == "downloaded"
    assert fetched.attempts == [429, 200]
    assert time.perf_counter() - started >= 0.95


def test_retry_after_is_capped(feed_server, downloader):
    feed_server.routes["/later.png"] = fail_first(
        503, feed_server.image_bytes(2), {"Retry-After": "3600"}
    )
    started = time.perf_counter()
    assert downloader.fetch(feed_server.url("/later.png")).status == "downloaded"
    assert time.perf_counter() - started < 3  # capped at max_retry_after (1 s here)


def test_a_slow_answer_times_out(feed_server, downloader):
    feed_server.routes["/slow.png"] = slow_route(feed_server.image_bytes(3), delay=1.5)
    fetched = downloader.fetch(feed_server.url("/slow.png"))
    assert (fetched.status, fetched.reason) == ("failed", FAILURE_TIMEOUT)


def test_a_truncated_body_is_reported(feed_server, downloader):
    feed_server.routes["/cut.png"] = truncated_route(feed_server.image_bytes(4))
    fetched = downloader.fetch(feed_server.url("/cut.png"))
    assert (fetched.status, fetched.reason) == ("failed", FAILURE_TRUNCATED)


def test_a_cut_image_with_a_matching_length_is_truncated(feed_server, downloader):
    data = jpeg_of(noise_png(120))
    feed_server.routes["/half.jpg"] = image_route(data[: len(data) // 2], "image/jpeg")
    fetched = downloader.fetch(feed_server.url("/half.jpg"))
    assert (fetched.status, fetched.reason) == ("failed", FAILURE_TRUNCATED)


def test_content_is_sniffed_not_the_content_type(feed_server, downloader):
    feed_server.routes["/photo"] = image_route(jpeg_of(feed_server.image_bytes(5)), "text/html")
    feed_server.routes["/page.jpg"] = image_route(b"<html><body>Sale!</body></html>", "image/jpeg")
    photo = downloader.fetch(feed_server.url("/photo"))
    page = downloader.fetch(feed_server.url("/page.jpg"))
    assert (photo.status, photo.extension) == ("downloaded", "jpg")
    assert (page.status, page.reason) == ("failed", FAILURE_NOT_IMAGE)


def test_redirects_are_followed_within_the_limit(feed_server, downloader):
    feed_server.routes["/r1"] = redirect_route(feed_server.image_url(6))
    feed_server.routes["/r2"] = redirect_route("/r1")
    feed_server.routes["/loop"] = redirect_route("/loop")
    assert downloader.fetch(feed_server.url("/r2")).status == "downloaded"
    looped = downloader.fetch(feed_server.url("/loop"))
    assert (looped.status, looped.reason) == ("failed", FAILURE_REDIRECTS)
    assert feed_server.count("/loop", 302) == 4  # the first answer and 3 redirects


def test_too_many_bytes_are_not_read(feed_server, downloader, fast_options):
    big = noise_png(300)  # about 270 KB, over the 200 KB limit
    assert len(big) > fast_options.max_bytes
    feed_server.routes["/big.png"] = image_route(big)
    feed_server.routes["/big-unsized.png"] = unsized_route(big)
    for path in ("/big.png", "/big-unsized.png"):
        fetched = downloader.fetch(feed_server.url(path))
        assert (fetched.status, fetched.reason) == ("failed", FAILURE_TOO_LARGE), path


def test_too_many_pixels_are_refused(feed_server, downloader):
    feed_server.routes["/bomb.png"] = image_route(flat_png(3000))  # 9 MP, small as a file
    fetched = downloader.fetch(feed_server.url("/bomb.png"))
    assert (fetched.status, fetched.reason) == ("failed", FAILURE_TOO_LARGE)


def test_an_unreachable_host_is_a_connection_error(downloader):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fetched = downloader.fetch(f"http://127.0.0.1:{port}/a.png")
    assert (fetched.status, fetched.reason) == ("failed", FAILURE_CONNECTION)


def test_the_per_host_limit_holds(feed_server, fast_options):
    active, most = [0], [0]
    lock = threading.Lock()
    data = feed_server.image_bytes(7)

    def counted(handler):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1
        handler.image(data)

    urls = []
    for n in range(12):
        feed_server.routes[f"/c{n}.png"] = counted
        urls.append((feed_server.url(f"/c{n}.png"), None))
    with Downloader(fast_options) as downloader:
        results = list(downloader.fetch_all(urls))
    assert all(r.status == "downloaded" for r in results)
    assert 1 < most[0] <= fast_options.per_host


def test_a_host_at_its_limit_does_not_hold_up_another(feed_server, fast_options):
    """Ten slow photos on one host, listed first, then two on another name of the server:
    with two transfers per host, the other host's photos come among the first answers."""
    import dataclasses

    data = feed_server.image_bytes(7)

    def slow(handler):
        time.sleep(0.15)
        handler.image(data)

    urls = []
    for n in range(10):
        feed_server.routes[f"/s{n}.png"] = slow
        urls.append((feed_server.url(f"/s{n}.png"), None))
    feed_server.routes["/quick.png"] = image_route(data)
    other = feed_server.url("/quick.png").replace("127.0.0.1", "localhost")
    urls += [(other, None), (f"{other}?again", None)]
    options = dataclasses.replace(fast_options, workers=6, per_host=2)
    with Downloader(options) as downloader:
        order = [r.url for r in downloader.fetch_all(urls) if r.status == "downloaded"]
    assert len(order) == 12
    assert {other, f"{other}?again"} <= set(order[:4])


def test_routes_can_change_between_runs(feed_server, downloader):
    feed_server.routes["/v.png"] = by_version(
        feed_server, {1: status_route(404), 2: image_route(feed_server.image_bytes(8))}
    )
    assert downloader.fetch(feed_server.url("/v.png")).reason == "http 404"
    feed_server.version = 2
    assert downloader.fetch(feed_server.url("/v.png")).status == "downloaded"


def test_sniff_image_names_the_format():
    assert sniff_image(jpeg_of(flat_png(10))) == "jpg"
    assert sniff_image(b"") == (FAILURE_NOT_IMAGE, "empty body")
