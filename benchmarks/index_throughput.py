"""Indexing throughput, side by side in one run on the same images and backbone:

  (a) the notebook pattern: each image loaded and run through the eager torch model alone;
  (b) the model-only ceiling: ONNX Runtime on pre-decoded tensors at its best batch size and
      thread layout (one session using every core, or one one-thread session per core);
  (c) `stylefinder index` end to end from files (scan, hash, decode, embed, commit), without
      recognition (`--no-recognize`), (c+) with it (the default: colours named as well), and
      (c++) with `--imagenet-categories` too (garment categories from the ImageNet head).

Two image sets: the demo catalog (1,000 28x28 PNGs) and 1,000 large JPEG photos (800x1000,
made from the same Fashion-MNIST images upscaled onto a white page). Prints images/s and the
ratios c/a and c/b, and writes benchmarks/results/index_throughput.json.

Each measure is taken in `--repeats` interleaved rounds (default 3) and the medians are
reported, since one round on a shared machine can be off by 20%.

Usage: python benchmarks/index_throughput.py [--backbone efficientnet-lite0] [--precision int8]
       [--notebook-images 200]   (the notebook pattern is timed on the first 200 images)
       [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import environment, save
from PIL import Image

from stylefinder.catalog.demo import load_demo_arrays, write_demo_catalog
from stylefinder.embed.base import Embedder, cpu_count
from stylefinder.embed.load import load_embedder
from stylefinder.embed.onnx import OnnxEmbedder
from stylefinder.embed.preprocess import to_input
from stylefinder.embed.torch_runtime import TorchEmbedder
from stylefinder.jobs.build import build_index


def write_jpeg_set(folder: Path, size: tuple[int, int] = (800, 1000), count: int = 1000) -> Path:
    """Large JPEG product photos (1,000 by default): demo garments upscaled onto white pages."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, pixels in enumerate(load_demo_arrays()["images"][:count]):
        garment = Image.fromarray(255 - pixels).resize((720, 720), Image.BICUBIC)
        page = Image.new("L", size, 255)
        page.paste(garment, ((size[0] - 720) // 2, (size[1] - 720) // 2))
        page.convert("RGB").save(folder / f"photo-{n:04d}.jpg", quality=90)
    return folder


def notebook_pattern(embedder: TorchEmbedder, files: list[Path]) -> float:
    """(a) images/s: load one image, preprocess, run the eager torch model on it alone."""
    import torch

    prep = embedder.spec.preprocessing
    model = embedder.model
    started = time.perf_counter()
    with torch.no_grad():
        for path in files:
            image = Image.open(path).convert("RGB")
            x = torch.from_numpy(to_input(image, prep)[None])
            model(x).numpy()
    return len(files) / (time.perf_counter() - started)


def model_ceiling(embedder: OnnxEmbedder, count: int = 256) -> dict[str, float]:
    """(b) images/s of ONNX Runtime on pre-decoded inputs for each layout (one session with
    every thread, or one one-thread session per core fed in parallel) and batch size."""
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 256, size=(count, *embedder.input_shape), dtype=np.uint8)
    cores = embedder.threads
    embedder._stream_runner(cores)  # makes the one-thread session the stream workers share
    session = embedder._stream_session or embedder._session

    def parallel(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {"pixels": batch})[0]

    rates = {}
    for batch in (1, 8, 16, 32, 64):
        embedder.run(inputs[:batch])  # warm up
        started = time.perf_counter()
        for start in range(0, count, batch):
            embedder.run(inputs[start : start + batch])
        rate = count / (time.perf_counter() - started)
        rates[f"1 session x {cores} threads, batch {batch}"] = rate
        if cores > 1:
            parallel(inputs[:batch])
            with ThreadPoolExecutor(cores) as pool:
                started = time.perf_counter()
                parts = [inputs[at : at + batch] for at in range(0, count, batch)]
                list(pool.map(parallel, parts))
                rate = count / (time.perf_counter() - started)
            rates[f"{cores} sessions x 1 thread, batch {batch}"] = rate
    return rates


def end_to_end(
    embedder: Embedder, catalog: Path, index_dir: Path, recognize: bool, categories: bool = False
) -> float:
    """(c) images/s of `stylefinder index` from files (model already loaded)."""
    started = time.perf_counter()
    summary = build_index(
        catalog, index_dir, embedder=embedder, recognize=recognize, imagenet_categories=categories
    )
    elapsed = time.perf_counter() - started
    assert summary.embedded == summary.total, summary
    assert summary.recognized == (summary.total if recognize else 0), summary
    return summary.embedded / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--notebook-images", type=int, default=200)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--out", default="benchmarks/results/index_throughput.json")
    args = parser.parse_args()
    torch_embedder = TorchEmbedder(args.backbone)
    onnx_embedder = load_embedder(args.backbone, precision=args.precision)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = {
            "demo PNG 28x28": write_demo_catalog(Path(tmp) / "png").root,
            "JPEG 800x1000": write_jpeg_set(Path(tmp) / "jpeg" / "images").parent,
        }
        for name, folder in sets.items():
            files = sorted(folder.rglob("*.png")) + sorted(folder.rglob("*.jpg"))
            runs: dict[str, list] = {"a": [], "b": [], "c": [], "named": [], "categories": []}
            runs["layout"] = []
            runs["b_layouts"] = []
            for repeat in range(args.repeats):  # interleaved, so drifts in load hit all alike
                runs["a"].append(notebook_pattern(torch_embedder, files[: args.notebook_images]))
                rates = model_ceiling(onnx_embedder)
                layout = max(rates, key=rates.get)
                runs["b"].append(rates[layout])
                runs["layout"].append(layout)
                runs["b_layouts"].append(rates)
                index_dir = Path(tmp) / f"index-{len(rows)}-{repeat}"
                runs["c"].append(end_to_end(onnx_embedder, folder, index_dir, False))
                named_dir = Path(tmp) / f"named-{len(rows)}-{repeat}"
                runs["named"].append(end_to_end(onnx_embedder, folder, named_dir, True))
                both_dir = Path(tmp) / f"categories-{len(rows)}-{repeat}"
                runs["categories"].append(end_to_end(onnx_embedder, folder, both_dir, True, True))
            measures = ("a", "b", "c", "named", "categories")
            a, b, c, named, categories = (float(np.median(runs[key])) for key in measures)
            rows.append(
                {
                    "images": name,
                    "count": len(files),
                    "a_notebook": round(a, 1),
                    "b_model_ceiling": round(b, 1),
                    "b_layout": runs["layout"][int(np.argsort(runs["b"])[len(runs["b"]) // 2])],
                    "c_end_to_end": round(c, 1),
                    "c_with_recognition": round(named, 1),
                    "c_with_categories": round(categories, 1),
                    "c_over_a": round(c / a, 2),
                    "c_over_b": round(c / b, 3),
                    "runs": {key: [round(v, 1) for v in runs[key]] for key in measures},
                    "b_by_layout_median": {
                        layout: round(float(np.median([r[layout] for r in runs["b_layouts"]])), 1)
                        for layout in runs["b_layouts"][0]
                    },
                }
            )
    result = {
        **environment("torch", "onnxruntime"),
        "backbone": args.backbone,
        "precision": args.precision,
        "threads": onnx_embedder.threads,
        "repeats": args.repeats,
        "rows": rows,
    }
    save(args.out, result)
    print(
        f"{args.backbone} ({args.precision} for b and c), {cpu_count()} cores; "
        f"images/s, median of {args.repeats} interleaved rounds"
    )
    print(
        f"{'images':<16} {'(a) notebook':>12} {'(b) ceiling':>12} {'(c) index':>10} "
        f"{'c/a':>6} {'c/b':>6} {'(c+) with colours':>18} {'(c++) and categories':>21}"
    )
    for r in rows:
        print(
            f"{r['images']:<16} {r['a_notebook']:>12} {r['b_model_ceiling']:>12} "
            f"{r['c_end_to_end']:>10} {r['c_over_a']:>6} {r['c_over_b']:>6} "
            f"{r['c_with_recognition']:>18} {r['c_with_categories']:>21}"
        )
    print("(b) best layouts: " + "; ".join(f"{r['images']}: {r['b_layout']}" for r in rows))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(cpu_count()))
    main()
