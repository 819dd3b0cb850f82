"""A real HTTP server on loopback that serves product feeds and images, with faults (the
`feed_server` fixture of conftest.py starts one per test).

Routes are plain functions of the request handler, so a test can add its own. The server
counts every answer it gives by (path, status), so tests can check what was downloaded
(200 bodies) and what was only revalidated (304).
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from stylefinder.catalog.demo import DemoCatalog

DATA = Path(__file__).parent / "data"
#: The host the sample feeds are written for; the server puts its own address there.
SAMPLE_BASE = "http://shop.example"
#: The sample products and how many photos each has, in feed order.
PRODUCTS = {
    "ankle-boot-classic": 2,
    "pullover-cosy": 3,
    "trouser-straight": 1,
    "shirt-oxford": 2,
    "coat-wool": 1,
    "sandal-summer": 2,
    "sneaker-runner": 1,
    "dress-wrap": 3,
    "bag-tote": 1,
    "tee-basic": 2,
}
LAST_MODIFIED = "Tue, 01 Dec 2026 10:00:00 GMT"

Route = Callable[["Handler"], None]


class Handler(BaseHTTPRequestHandler):
    server: FeedServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go at once (no 40 ms delayed-ACK stall)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        route = self.server.routes.get(path)
        if route is None and path.startswith("/images/"):
            route = self.server.image_route(path.removeprefix("/images/"))
        if route is None:
            self.answer(404, b"not found", "text/plain")
            return
        route(self)

    def send_response(self, code: int, message: str | None = None) -> None:
        with self.server.lock:
            self.server.hits[(self.path.split("?", 1)[0], code)] += 1
        super().send_response(code, message)

    def answer(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """Send a complete answer."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def image(self, data: bytes, content_type: str = "image/png") -> None:
        """Send an image with an ETag (its hash) and Last-Modified, or 304 when the client's
        If-None-Match names that ETag."""
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.answer(200, data, content_type, {"ETag": etag, "Last-Modified": LAST_MODIFIED})

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


class FeedServer(ThreadingHTTPServer):
    """The loopback server: `routes` by path, demo images under /images/<file name>."""

    daemon_threads = True

    def __init__(self, demo: DemoCatalog) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        self.demo = demo
        self.routes: dict[str, Route] = {}
        self.hits: Counter[tuple[str, int]] = Counter()
        self.lock = threading.Lock()
        self.version = 1  # tests bump it between syncs; routes may look at it

    def handle_error(self, request, client_address) -> None:  # a client that hung up
        pass

    def url(self, path: str) -> str:
        return self.base + path

    def image_url(self, number: int) -> str:
        return self.url(f"/images/fmnist-test-{number:05d}.png")

    def image_bytes(self, number: int) -> bytes:
        return (self.demo.root / "images" / f"fmnist-test-{number:05d}.png").read_bytes()

    def image_route(self, name: str) -> Route | None:
        path = self.demo.root / "images" / name
        if not path.is_file():
            return None
        data = path.read_bytes()
        return lambda handler: handler.image(data)

    def serve_feed(self, path: str, text: str, content_type: str = "text/csv") -> str:
        """Serve a feed at `path`, its sample host replaced by this server; returns its URL."""
        body = text.replace(SAMPLE_BASE, self.base).encode("utf-8")
        self.routes[path] = lambda handler: handler.answer(200, body, content_type)
        return self.url(path)

    def count(self, path: str, status: int) -> int:
        with self.lock:
            return self.hits[(path, status)]

    def bodies(self, prefix: str = "/") -> dict[str, int]:
        """How many 200 answers each path under `prefix` got."""
        with self.lock:
            return {p: n for (p, s), n in self.hits.items() if s == 200 and p.startswith(prefix)}

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()


# --- fault routes ----------------------------------------------------------------------------


def jpeg_of(png: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


def fail_first(status: int, data: bytes, headers: dict[str, str] | None = None) -> Route:
    """`status` on the first request, the image afterwards (500 then success, 429 ...)."""
    calls = {"n": 0}

    def route(handler: Handler) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            handler.answer(status, b"try again", "text/plain", headers)
        else:
            handler.image(data)

    return route


def status_route(status: int) -> Route:
    return lambda handler: handler.answer(status, b"no", "text/plain")


def slow_route(data: bytes, delay: float) -> Route:
    def route(handler: Handler) -> None:
        time.sleep(delay)
        handler.image(data)

    return route


def truncated_route(data: bytes) -> Route:
    """Content-Length says more than is sent; then the connection closes."""

    def route(handler: Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", str(len(data) + 5000))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.wfile.flush()
        handler.close_connection = True

    return route


def unsized_route(data: bytes) -> Route:
    """A body without Content-Length (read until the connection closes)."""

    def route(handler: Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data)
        handler.close_connection = True

    return route


def redirect_route(target: str) -> Route:
    def route(handler: Handler) -> None:
        handler.answer(302, b"", "text/plain", {"Location": target})

    return route


def by_version(server: FeedServer, routes: dict[int, Route]) -> Route:
    """A route that behaves as `routes[server.version]` (the last one for later versions)."""

    def route(handler: Handler) -> None:
        chosen = routes.get(server.version) or routes[max(routes)]
        chosen(handler)

    return route


def image_route(data: bytes, content_type: str = "image/png") -> Route:
    return lambda handler: handler.image(data, content_type)


def noise_png(side: int) -> bytes:
    """A PNG that does not compress (random pixels): about side*side*3 bytes."""
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def flat_png(side: int) -> bytes:
    """A PNG of one colour: tiny as a file, `side`*`side` pixels decoded."""
    out = io.BytesIO()
    Image.new("L", (side, side), 200).save(out, format="PNG")
    return out.getvalue()
