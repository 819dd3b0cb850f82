"""Load test of the HTTP API on 127.0.0.1: throughput and latency of concurrent searches, then
the same with a stream of malformed requests mixed in.

Usage: python benchmarks/api_load.py --index .demo/index --queries .demo/queries
       [--workers 1] [--clients 8] [--requests 400] [--seconds 60]
Starts `stylefinder serve` on a free local port, sends a bounded number of requests (and stops
after --seconds in any case), writes benchmarks/results/api_load.json and prints a table.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import environment, save

from stylefinder.app.browser import free_port


def malformed_requests(photo: bytes) -> list[dict]:
    """Bad requests of every kind the API must answer with a 4xx."""
    junk = os.urandom(4096)
    return [
        {"files": {"image": ("x.jpg", b"not an image")}},
        {"files": {"image": ("x.jpg", junk)}},
        {"files": {"image": ("x.jpg", b"")}},
        {"files": {"image": ("x.png", photo)}, "data": {"k": "0"}},
        {"files": {"image": ("x.png", photo)}, "data": {"k": "1000"}},
        {"files": {"image": ("x.png", photo)}, "data": {"filters": "{oops"}},
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"json": {"image_base64": "%%%"}},
        {"json": {"image_base64": base64.b64encode(junk).decode(), "k": 5}},
        {"content": b"hello", "headers": {"content-type": "text/plain"}},
        {"content": bytes(15_000_000), "headers": {"content-type": "application/json"}},
    ]


def run(
    url: str,
    photos: list[bytes],
    *,
    clients: int,
    requests: int,
    seconds: float,
    bad_clients: int = 0,
) -> dict:
    """`clients` threads share `requests` good searches; `bad_clients` send malformed ones."""
    good = itertools.count()
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    bad_statuses: dict[str, int] = {}
    done = threading.Event()

    def good_client() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.monotonic() < stop_at and (n := next(good)) < requests:
                photo = photos[n % len(photos)]
                started = time.perf_counter()
                try:
                    r = http.post("/v1/search", files={"image": ("q.png", photo)})
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == "200":
                        latencies.append(elapsed)

    def bad_client(offset: int) -> None:
        cases = malformed_requests(photos[0])
        with httpx.Client(base_url=url, timeout=30) as http:
            for n in itertools.count(offset):
                if done.is_set() or time.monotonic() >= stop_at:
                    return
                try:
                    r = http.post("/v1/search", **cases[n % len(cases)])
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    bad_statuses[status] = bad_statuses.get(status, 0) + 1

    started = time.perf_counter()
    good_threads = [threading.Thread(target=good_client) for _ in range(clients)]
    bad_threads = [threading.Thread(target=bad_client, args=(i,)) for i in range(bad_clients)]
    for t in good_threads + bad_threads:
        t.start()
    for t in good_threads:
        t.join()
    done.set()
    for t in bad_threads:
        t.join()
    wall = time.perf_counter() - started
    ok = len(latencies)
    q = statistics.quantiles(latencies, n=100) if ok >= 2 else [float("nan")] * 99
    return {
        "clients": clients,
        "malformed_clients": bad_clients,
        "good_requests": sum(statuses.values()),
        "good_ok": ok,
        "good_errors": sum(statuses.values()) - ok,
        "good_statuses": statuses,
        "malformed_requests": sum(bad_statuses.values()),
        "malformed_statuses": bad_statuses,
        "malformed_all_4xx": all(s.isdigit() and 400 <= int(s) < 500 for s in bad_statuses),
        "seconds": round(wall, 2),
        "throughput_rps": round(ok / wall, 1),
        "p50_ms": round(q[49] * 1000, 1),
        "p95_ms": round(q[94] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--queries", required=True, help="folder of query photos")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--out", default="benchmarks/results/api_load.json")
    args = parser.parse_args()
    photos = [p.read_bytes() for p in sorted(Path(args.queries).glob("*.png"))]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "admin.key"
        key_file.write_text(secrets.token_hex(16))
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stylefinder.cli",
                "serve",
                "--index",
                args.index,
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--admin-key-file",
                str(key_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_ready(url, server)
            clean = run(
                url, photos, clients=args.clients, requests=args.requests, seconds=args.seconds
            )
            mixed = run(
                url,
                photos,
                clients=args.clients,
                requests=args.requests,
                seconds=args.seconds,
                bad_clients=max(1, args.clients // 2),
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {
        **environment("fastapi", "uvicorn"),
        "workers": args.workers,
        "runs": {"searches": clean, "searches_with_malformed": mixed},
    }
    save(args.out, result)
    print(
        f"{'run':<26} {'ok':>5} {'err':>4} {'req/s':>6} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7}  malformed (status: count)"
    )
    for name, r in result["runs"].items():
        bad = ", ".join(f"{s}: {n}" for s, n in sorted(r["malformed_statuses"].items())) or "-"
        print(
            f"{name:<26} {r['good_ok']:>5} {r['good_errors']:>4} {r['throughput_rps']:>6} "
            f"{r['p50_ms']:>7} {r['p95_ms']:>7} {r['p99_ms']:>7}  {bad}"
        )


def _wait_ready(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"the server did not become ready within {timeout:.0f} s")


if __name__ == "__main__":
    main()
