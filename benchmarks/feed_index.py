"""Feed indexing throughput, side by side in one run on the same images and backbone:

  (local) `build_index` on a folder of image files (scan, hash, decode, embed, commit);
  (feed)  `sync_feed` on a CSV feed of the same images served over loopback HTTP (by
          `http.server` in another process, keep-alive and TCP_NODELAY on) (read the
          feed, download every image with the pooled, concurrent downloader, sniff and
          decode-check it, write it into the index's feed folder, then the same indexing).

Both end to end, first run into an empty index, without recognition (`recognize=False`), so
the ratio shows what the feed stage costs on top of indexing. Target: feed >= 0.85 x local.
Two image sets: the demo catalog (28x28 PNGs) and large JPEG product photos (800x1000, made
from the same garments, as in `index_throughput.py`). Each measure is taken in `--repeats`
interleaved rounds and the medians are reported. Writes benchmarks/results/feed_index.json.

Usage: python benchmarks/feed_index.py [--backbone efficientnet-lite0] [--count 1000]
       [--repeats 5] [--workers 16] [--per-host 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import environment, save
from index_throughput import write_jpeg_set

from stylefinder.catalog.demo import write_demo_catalog
from stylefinder.catalog.feeds.download import DownloadOptions
from stylefinder.embed.base import cpu_count
from stylefinder.embed.load import load_embedder
from stylefinder.jobs.build import build_index
from stylefinder.jobs.feed import sync_feed

#: The image server: `http.server`'s static files with keep-alive and TCP_NODELAY (as a CDN
#: answers; without it the headers and the body wait on each other's ACK, 40 ms a request),
#: bodies sent with sendfile and a listen backlog that drops no connection (a backlog of 5
#: drops some under 8 at once, and a dropped connection waits a second to try again). The
#: server shares this machine's two cores, which a shop's CDN does not.
SERVER = """
import functools, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
ThreadingHTTPServer.request_queue_size = 128  # a CDN does not drop connections
class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *args):
        pass
    def copyfile(self, source, outputfile):
        self.connection.sendfile(source)  # the body in the kernel, as static file servers do
handler = functools.partial(Handler, directory=sys.argv[1])
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), handler).serve_forever()
"""


def serve(folder: Path) -> tuple[subprocess.Popen, str]:
    """A loopback static file server on `folder` (keep-alive, Last-Modified, 304s) in its own
    process, as a shop's CDN would be: it does not share this process's interpreter lock."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-c", SERVER, str(folder), str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def write_feed(files: list[Path], folder: Path, base: str) -> str:
    """A generic CSV feed of `files` (under `folder`) as served at `base`; its relative URL."""
    lines = ["id,title,image_url"]
    for n, path in enumerate(files):
        lines.append(f"p{n:05d},Product {n},{base}/{path.relative_to(folder).as_posix()}")
    (folder / "feed.csv").write_text("\n".join(lines) + "\n")
    return "feed.csv"


def local_rate(embedder, folder: Path, index_dir: Path) -> float:
    started = time.perf_counter()
    summary = build_index(folder, index_dir, embedder=embedder, recognize=False)
    elapsed = time.perf_counter() - started
    assert summary.embedded == summary.total and not summary.skipped, summary
    return summary.embedded / elapsed


def feed_rate(embedder, feed_url: str, index_dir: Path, options: DownloadOptions) -> tuple:
    started = time.perf_counter()
    summary = sync_feed(feed_url, index_dir, download=options, embedder=embedder, recognize=False)
    elapsed = time.perf_counter() - started
    assert not summary.failed and summary.index.embedded == summary.fetch.images, summary.fetch
    return summary.index.embedded / elapsed, summary.fetch.download_seconds, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--count", type=int, default=1000, help="images per set")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; medians are reported")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--per-host", type=int, default=8)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "feed_index.json"))
    args = parser.parse_args()
    embedder = load_embedder(args.backbone)
    options = DownloadOptions(workers=args.workers, per_host=args.per_host)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        demo = write_demo_catalog(root / "png").root / "images"
        sets = {
            "demo PNG 28x28": demo,
            "JPEG 800x1000": write_jpeg_set(root / "jpeg" / "images", count=args.count),
        }
        for name, folder in sets.items():
            files = sorted(p for p in folder.iterdir() if p.suffix in (".png", ".jpg"))
            for extra in files[args.count :]:
                extra.unlink()
            files = files[: args.count]
            server, base = serve(folder)
            feed_url = f"{base}/{write_feed(files, folder, base)}"
            warm = root / f"warm-{len(rows)}"
            local_rate(embedder, folder, warm)  # the model's sessions and page cache warm
            local, feed, download = [], [], []
            for repeat in range(args.repeats):  # interleaved, so load drifts hit both alike
                local.append(local_rate(embedder, folder, root / f"local-{len(rows)}-{repeat}"))
                rate, seconds, _ = feed_rate(
                    embedder, feed_url, root / f"feed-{len(rows)}-{repeat}", options
                )
                feed.append(rate)
                download.append(len(files) / seconds)
            server.terminate()
            server.wait()
            a, b, d = (float(np.median(v)) for v in (local, feed, download))
            rows.append(
                {
                    "images": name,
                    "count": len(files),
                    "local_images_per_s": round(a, 1),
                    "feed_images_per_s": round(b, 1),
                    "feed_over_local": round(b / a, 3),
                    "download_images_per_s": round(d, 1),
                    "runs": {
                        "local": [round(v, 1) for v in local],
                        "feed": [round(v, 1) for v in feed],
                        "download": [round(v, 1) for v in download],
                    },
                }
            )
    result = {
        **environment("onnxruntime", "pycurl", "pillow"),
        "backbone": args.backbone,
        "threads": embedder.threads,
        "repeats": args.repeats,
        "download": {"workers": args.workers, "per_host": args.per_host},
        "target_feed_over_local": 0.85,
        "rows": rows,
    }
    save(args.out, result)
    print(
        f"{args.backbone}, {cpu_count()} cores; images/s end to end into an empty index, "
        f"median of {args.repeats} interleaved rounds (target feed/local >= 0.85)"
    )
    print(f"{'images':<16} {'local':>8} {'feed':>8} {'feed/local':>11} {'download only':>14}")
    for r in rows:
        print(
            f"{r['images']:<16} {r['local_images_per_s']:>8} {r['feed_images_per_s']:>8} "
            f"{r['feed_over_local']:>11} {r['download_images_per_s']:>14}"
        )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(cpu_count()))
    main()
