"""Local against Ray indexing, side by side in one run on the same machine and the same JPEGs:
images/s of `build_index` with the default (local) engine, and with `engine="ray"` on one and
on two actors, embedding with the default backbone's ONNX graph at fp32 (the Ray engine's only
model; the default runtime of local indexing too, so both run the same graph on the same
embedder object).

The photos are 800x1000 product-photo JPEGs (the demo garments upscaled onto a white page, as
in index_throughput.py), written once. Every run indexes them into a fresh index directory,
with the defaults otherwise (colours named while embedding).

Ray's start-up is kept out of the throughput and reported apart:
  - cluster start-up: one local cluster (2 CPUs, on 127.0.0.1) started here with `ray.init`,
    timed alone; `build_index` joins it (`ray_address="auto"`) instead of starting its own;
  - warm-up: an untimed run of `--warmup` images per series (first imports), its wall time
    reported;
  - actor pool start-up: in the "ray x1" and "ray x2" series every run starts its own pool,
    whose actors load the graph and warm up (what a one-off `stylefinder index` run pays); in
    the "kept" series the pool is started once, by the warm-up run (its start-up reported), and
    kept for the timed runs (`ray_keep_workers`: a process that indexes again and again).
Per run: images/s over the embedding phase (`IndexSummary.embed_seconds`), the same after the
first batch (steady state) and over the whole `build_index` call (end to end, the headline).

The series with a new pool per run are interleaved in `--rounds` rounds (local, Ray x1, Ray
x2); each kept series runs its rounds interleaved with local runs of its own (a kept pool holds
its CPUs, so the next pool starts after it is released). Medians are reported with the ratios
to local.

Usage: python benchmarks/distributed_index.py [--images 1000] [--rounds 2] [--warmup 64]
       [--out benchmarks/results/distributed_index.json]
Needs the ray extra (pip install 'stylefinder[ray]'); takes about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from common import environment, save
from index_throughput import write_jpeg_set

from stylefinder.embed.base import cpu_count
from stylefinder.embed.load import load_embedder
from stylefinder.embed.onnx import OnnxEmbedder
from stylefinder.embed.registry import DEFAULT_BACKBONE
from stylefinder.jobs.build import build_index
from stylefinder.jobs.ray_engine import DEFAULT_RAY_BATCH, RayStream, loopback_only, release_pools

# series: (engine, Ray actors, whether the actor pool is kept between runs)
SERIES = {
    "local": ("local", None, False),
    "ray x1": ("ray", 1, False),
    "ray x2": ("ray", 2, False),
    "ray x1 kept": ("ray", 1, True),
    "ray x2 kept": ("ray", 2, True),
}
COLD, KEPT = ("local", "ray x1", "ray x2"), ("ray x1 kept", "ray x2 kept")
RAY_CPUS = 2


class Clock:
    """Wraps an `embed_stream` to note when it starts, when its first batch (of how many
    images) comes back, and when it ends. It times; it changes nothing."""

    def __init__(self, embed_stream) -> None:
        self.embed_stream = embed_stream
        self.started = self.first = self.ended = None
        self.first_images = 0

    def __call__(self, *args, **kwargs):
        self.started = time.perf_counter()
        for batch in self.embed_stream(*args, **kwargs):
            if self.first is None:
                self.first = time.perf_counter()
                self.first_images = len(batch.keys)
            yield batch
        self.ended = time.perf_counter()


@contextlib.contextmanager
def clocked(engine: str, embedder: OnnxEmbedder):
    """A `Clock` on the embed_stream that `build_index` calls for `engine`."""
    if engine == "local":  # build_index streams from the embedder itself
        clock = Clock(embedder.embed_stream)
        embedder.embed_stream = clock
        try:
            yield clock
        finally:
            del embedder.embed_stream
    else:
        original = RayStream.embed_stream
        clock = Clock(lambda *args, **kwargs: original(*args, **kwargs))
        RayStream.embed_stream = lambda self, *args, **kwargs: clock(self, *args, **kwargs)
        try:
            yield clock
        finally:
            RayStream.embed_stream = original


def index_once(series: str, embedder: OnnxEmbedder, photos: Path, index_dir: Path) -> dict:
    """One `build_index` run of `series` into the new `index_dir`, with its timings."""
    engine, workers, keep = SERIES[series]
    options = {"engine": "ray", "ray_address": "auto", "ray_workers": workers}
    options["ray_keep_workers"] = keep
    with clocked(engine, embedder) as clock:
        started = time.perf_counter()
        summary = build_index(photos, index_dir, embedder=embedder, **(options if workers else {}))
        wall = time.perf_counter() - started
    assert summary.embedded == summary.total == summary.scanned and not summary.skipped, summary
    after_first = summary.embedded - clock.first_images
    return {
        "images": summary.embedded,
        "images_per_s": round(summary.images_per_second, 1),
        "steady_images_per_s": round(after_first / (clock.ended - clock.first), 1),
        "end_to_end_images_per_s": round(summary.embedded / wall, 1),
        "embed_s": round(summary.embed_seconds, 2),
        "wall_s": round(wall, 2),
        "first_batch_s": round(clock.first - clock.started, 2),
        "first_batch_images": clock.first_images,
        "wall_without_first_batch_s": round(wall - (clock.first - clock.started), 2),
    }


def leftover_ray_processes(wait_s: float = 15.0) -> list[str]:
    """Command lines of raylet or GCS processes still running after `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for name in ("raylet", "gcs_server"):
            done = subprocess.run(["pgrep", "-fa", name], capture_output=True, text=True)
            found += [line for line in done.stdout.splitlines() if "pgrep" not in line]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def wait_for_cpus(ray, count: int, timeout_s: float = 60.0) -> None:
    """Wait until `count` CPUs of the cluster are free again (killed actors give theirs back
    a moment later)."""
    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get("CPU", 0) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"the cluster's CPUs did not come free: {ray.available_resources()}")
        time.sleep(0.1)


def median(values: list[float]) -> float:
    return round(float(np.median(values)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved; medians reported")
    parser.add_argument("--warmup", type=int, default=64, help="images of each warm-up run")
    parser.add_argument("--out", default="benchmarks/results/distributed_index.json")
    args = parser.parse_args()
    loopback_only()  # this cluster's servers on 127.0.0.1 only
    import ray

    began = time.perf_counter()
    embedder = OnnxEmbedder.for_weights(DEFAULT_BACKBONE, precision="fp32") or load_embedder(
        DEFAULT_BACKBONE, runtime="onnx", precision="fp32"
    )
    default_runtime = inspect.signature(build_index).parameters["runtime"].default
    if leftover_ray_processes(wait_s=0):
        raise SystemExit("a Ray cluster is already running here: stop it first")
    runs: dict[str, list[dict]] = {name: [] for name in SERIES}
    runs.update({f"local beside {name}": [] for name in KEPT})
    warmups: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        photos = write_jpeg_set(Path(tmp) / "photos", count=args.images)
        assert len(list(photos.glob("*.jpg"))) == args.images, "fewer demo images than --images"
        warm = Path(tmp) / "warm"
        warm.mkdir()
        for path in sorted(photos.glob("*.jpg"))[: args.warmup]:
            shutil.copy2(path, warm / path.name)
        started = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=RAY_CPUS,
            include_dashboard=False,
            log_to_driver=False,
        )
        cluster_start_s = time.perf_counter() - started
        try:
            resources = {k: v for k, v in ray.cluster_resources().items() if "node" not in k}
            for name in COLD:  # every Ray run starts its own actor pool
                warmups[name] = index_once(name, embedder, warm, Path(tmp) / f"warm-{name}")
            for round_ in range(args.rounds):  # interleaved: drifts in load hit every series
                for name in COLD:
                    index_dir = Path(tmp) / f"index-{name}-{round_}"
                    runs[name].append(index_once(name, embedder, photos, index_dir))
                    print(f"round {round_ + 1} {name}: {runs[name][-1]}", flush=True)
            for name in KEPT:  # a pool started once (its start-up apart), then kept
                warmups[name] = index_once(name, embedder, warm, Path(tmp) / f"warm-{name}")
                for round_ in range(args.rounds):  # each beside a local run of its own
                    for series in ("local", name):
                        index_dir = Path(tmp) / f"index-{series}-{name}-{round_}"
                        result = index_once(series, embedder, photos, index_dir)
                        runs[series if series != "local" else f"local beside {name}"].append(result)
                        print(f"round {round_ + 1} {series}: {result}", flush=True)
                release_pools()  # a kept pool holds its CPUs: the next one needs them
                wait_for_cpus(ray, RAY_CPUS)
        finally:
            started = time.perf_counter()
            ray.shutdown()
            shutdown_s = time.perf_counter() - started
        left = leftover_ray_processes()
    keys = ("images_per_s", "steady_images_per_s", "end_to_end_images_per_s", "first_batch_s")
    keys += ("embed_s", "wall_s", "wall_without_first_batch_s")
    medians = {name: {key: median([r[key] for r in runs[name]]) for key in keys} for name in runs}
    ratios = {
        f"ray x{n} / local{suffix}": round(medians[f"ray x{n}"][key] / medians["local"][key], 3)
        for n in (1, 2)
        for key, suffix in (
            ("images_per_s", ""),
            ("steady_images_per_s", " (steady)"),
            ("end_to_end_images_per_s", " (end to end)"),
        )
    }
    for n in (1, 2):  # a kept pool against the local runs interleaved with it
        kept, local = medians[f"ray x{n} kept"], medians[f"local beside ray x{n} kept"]
        for key, suffix in (("images_per_s", ""), ("end_to_end_images_per_s", " (end to end)")):
            ratios[f"ray x{n} kept / local{suffix}"] = round(kept[key] / local[key], 3)
    result = {
        **environment("ray", "onnxruntime", "numpy"),
        "cpu_count": cpu_count(),
        "backbone": embedder.space.backbone,
        "runtime": "onnx",
        "precision": embedder.precision,
        "default_runtime": default_runtime,
        "local_threads": embedder.threads,
        "ray_batch_size": DEFAULT_RAY_BATCH,
        "ray_cluster": {"address": "local", "node_ip": "127.0.0.1", "resources": resources},
        "images": f"{args.images} JPEG 800x1000",
        "rounds": args.rounds,
        "ray_cluster_start_s": round(cluster_start_s, 2),
        "ray_shutdown_s": round(shutdown_s, 2),
        "ray_processes_left": left,
        "warmup_images": args.warmup,
        "warmup": warmups,
        "runs": runs,
        "medians": medians,
        "ratios": ratios,
        "ray2_over_local": ratios["ray x2 / local"],
        "ray2_kept_over_local_end_to_end": ratios["ray x2 kept / local (end to end)"],
        "meets_0_8": ratios["ray x2 kept / local (end to end)"] >= 0.8,
        "total_s": round(time.perf_counter() - began, 1),
    }
    save(args.out, result)
    print(
        f"\n{embedder.space.backbone} onnx fp32, {args.images} JPEG 800x1000, {cpu_count()} cores; "
        f"median of {args.rounds} interleaved rounds (default runtime: {default_runtime})"
    )
    print(
        f"{'series':<26} {'images/s':>9} {'steady':>8} {'end-to-end':>11} "
        f"{'1st batch s':>12} {'embed s':>8} {'wall s':>7} {'warm-up s':>10}"
    )
    for name, m in medians.items():
        warmup_s = warmups[name]["wall_s"] if name in warmups else "-"
        print(
            f"{name:<26} {m['images_per_s']:>9} {m['steady_images_per_s']:>8} "
            f"{m['end_to_end_images_per_s']:>11} {m['first_batch_s']:>12} {m['embed_s']:>8} "
            f"{m['wall_s']:>7} {warmup_s:>10}"
        )
    print(f"Ray cluster start-up {cluster_start_s:.2f} s, shutdown {shutdown_s:.2f} s")
    print("; ".join(f"{key} {value}" for key, value in ratios.items()))
    print(
        f"ray x2 kept / local, end to end = {ratios['ray x2 kept / local (end to end)']} "
        f"(needs >= 0.8); with a new pool each run: {ratios['ray x2 / local (end to end)']}"
    )
    print(f"Ray processes left: {left or 'none'}; wrote {args.out}")


if __name__ == "__main__":
    main()
