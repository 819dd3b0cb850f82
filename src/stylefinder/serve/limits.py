"""ASGI middleware for the API: printable paths, request body size limit, request timeout and
metrics."""

from __future__ import annotations

import asyncio
import json
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class _BodyTooLargeError(Exception):
    pass


async def _send_error(send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class PrintablePath:
    """Answer 422 to a request whose path holds a control character (sent percent-encoded, as
    %0A): no id may hold one, and routing cannot see past a newline."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and any(ord(c) < 32 for c in scope.get("path", "")):
            message = "the path holds a control character; item and user ids are printable text"
            return await _send_error(send, 422, "invalid_path", message)
        return await self.app(scope, receive, send)


class BodySizeLimit:
    """Answer 413 to any request whose body is larger than `max_bytes`, before reading it all."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"the request body is larger than {self.max_bytes:,} bytes"
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _send_error(send, 413, "upload_too_large", message)
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            incoming = await receive()
            if incoming["type"] == "http.request":
                received += len(incoming.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLargeError
            return incoming

        async def tracking_send(outgoing) -> None:
            nonlocal started
            started = started or outgoing["type"] == "http.response.start"
            await send(outgoing)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLargeError:
            if not started:
                await _send_error(send, 413, "upload_too_large", message)


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in a process)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stylefinder_http_requests_total",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stylefinder_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.items = Gauge(
            "stylefinder_index_items", "Items in the loaded index", registry=self.registry
        )

    def watch_index(self, engine) -> None:
        self.items.set_function(lambda: len(engine))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestTimeout:
    """Answer 504 when a request takes longer than `seconds`; record every request's metrics."""

    def __init__(self, app, seconds: float, metrics: Metrics) -> None:
        self.app, self.seconds, self.metrics = app, seconds, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started_at = time.perf_counter()
        status = 500
        started = False

        async def tracking_send(outgoing) -> None:
            nonlocal status, started
            if outgoing["type"] == "http.response.start":
                status, started = outgoing["status"], True
            await send(outgoing)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracking_send), self.seconds)
        except asyncio.TimeoutError:
            if not started:
                status = 504
                await _send_error(
                    send, 504, "timeout", f"the request took longer than {self.seconds:g} s"
                )
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(
                scope.get("method", ""), name, status, time.perf_counter() - started_at
            )
