"""Seconds from uploading a photo in the web app until its first 5 results show, in Chromium.

Usage: python benchmarks/app_latency.py --index .demo/index --queries .demo/queries [--n 10]
Starts `stylefinder app` on a free port on 127.0.0.1, uploads each query photo in turn in
headless Chromium, and times until 5 result images have loaded. Prints a table and writes
benchmarks/results/app_latency.json (command, machine, versions).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import environment, save

from stylefinder.app.browser import chromium, free_port, open_app, running_app, upload_and_wait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--n", type=int, default=10, help="number of uploads (default 10)")
    parser.add_argument("--out", default="benchmarks/results/app_latency.json")
    args = parser.parse_args()
    photos = sorted(Path(args.queries).glob("*.png"))[: args.n]
    started = time.perf_counter()
    with running_app(args.index, port=free_port()) as url, chromium() as browser:
        app_start = time.perf_counter() - started
        open_app(browser, url)
        seconds = [upload_and_wait(browser, photo, results=5) for photo in photos]
    result = {
        **environment("streamlit", "onnxruntime"),
        "uploads": len(seconds),
        "app_start_seconds": round(app_start, 2),
        "upload_to_5_results_seconds": {
            "first": round(seconds[0], 3),
            "median": round(statistics.median(seconds), 3),
            "max": round(max(seconds), 3),
        },
    }
    save(args.out, result)
    print(f"app started and answered in {app_start:.1f} s")
    print(f"{'upload':<28} seconds to 5 results")
    for photo, s in zip(photos, seconds, strict=True):
        print(f"{photo.name:<28} {s:.3f}")
    print(
        f"first {seconds[0]:.3f} s, median {statistics.median(seconds):.3f} s, "
        f"max {max(seconds):.3f} s over {len(seconds)} uploads"
    )


if __name__ == "__main__":
    main()
