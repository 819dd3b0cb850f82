"""Query latency: exact search and the index's own vector index on 10k and 100k item indexes,
the vector index's recall, index open time and resident memory, and `Engine.recommend` from an
image file at 10k items, alone and after `Engine.recognize` on the same upload (as the web app
does); with `--datasets text`, text and hybrid search on titled items (`text_latency.py`).
`benchmarks/ann_latency.py` measures the graph in depth, at 100k and 1M items.

Three kinds of vectors, all 1280-d unit vectors like efficientnet-lite0 embeddings:

- isotropic: random directions. Pathological for any approximate search: every neighbour is
  about as far as any other, so the graph needs a wide search to reach the target recall (the
  search width chosen at commit time shows how wide).
- clustered: synthetic vectors around cluster centres (~100 items a cluster), with a power-law
  spectrum (variance of the i-th principal component ~ i**-1.1, mean vector of norm 0.71)
  calibrated on real efficientnet-lite0 embeddings of Fashion-MNIST.
- real: those embeddings themselves (70k: train + test), when `--real` names the .npz file
  (arrays `tx` and `sx`); one size only.

Each index is committed as the engine's indexes are: a faiss HNSW graph from
`AnnSettings.min_rows` (20,000) items, exact search below (`--ann-min-rows 0` commits a graph at
every size). The vector index columns show what the commit chose (kind, search width, the
recall@10 it measured) and that index's `search` as the engine calls it; for an exact index
they time `ExactIndex.search`, which differs from the plain `top_k` only by its masks.

Queries are rows of the index, each excluding itself (as `Engine.similar` does). Recall@k of the
vector index counts results whose exact score reaches the k-th exact score (ties between
duplicates are not misses). With `--tuned-epochs`, the real index is also tuned on its labels
and `Engine.search_vector` is timed in the projected space (`tuned_space`: the projected matrix
and its own vector index, written under the index folder by the first search).

Usage: python benchmarks/query_latency.py [--sizes 10000,100000] [--queries 200]
    [--datasets isotropic,clustered,real,text] [--real /tmp/fmnist-lite0.npz] [--ann-min-rows N]
    [--tuned-epochs N] [--out FILE]
Writes benchmarks/results/query_latency.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import environment, save
from index_throughput import write_jpeg_set
from text_latency import print_text_rows, run_text

from stylefinder.catalog.demo import CLASS_NAMES, write_demo_catalog
from stylefinder.embed.base import Embedder
from stylefinder.embed.load import load_embedder
from stylefinder.engine import Engine
from stylefinder.index.manifest import ann_entry
from stylefinder.index.search import top_k
from stylefinder.index.snapshot import Snapshot
from stylefinder.index.store import IndexStore
from stylefinder.index.vector_index import DEFAULT_ANN, AnnSettings, VectorIndex, entry_files
from stylefinder.recommend.projection import TUNED_FOLDER, fit_mlp_projection
from stylefinder.types import Item

DIM = 1280
K = 10
SPECTRUM_DECAY = 1.1  # top 128 components: 80% of the variance, as in the real embeddings
MEAN_NORM = 0.71  # norm of the mean of those embeddings


def rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def isotropic(size: int, seed: int = 0) -> np.ndarray:
    """`size` random unit vectors."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((size, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def clustered(size: int, seed: int = 0, per_cluster: int = 100, between: float = 0.5):
    """Unit vectors around `size / per_cluster` centres with a CNN-like decaying spectrum.

    Variance around the mean decays as i**-1.1 over components (real embeddings: about the same
    80% of it in the top 128); `between` of it separates the centres, the rest spreads each
    cluster. Search is rotation-invariant, so the components are the coordinate axes.
    """
    rng = np.random.default_rng(seed)
    spectrum = np.arange(1, DIM + 1, dtype=np.float64) ** -SPECTRUM_DECAY
    spectrum *= (1 - MEAN_NORM**2) / spectrum.sum()  # unit vectors: total variance 1 - |mean|^2
    mean = np.abs(rng.standard_normal(DIM))
    mean *= MEAN_NORM / np.linalg.norm(mean)
    clusters = max(10, size // per_cluster)
    centres = rng.standard_normal((clusters, DIM)) * np.sqrt(between * spectrum)
    spread = np.sqrt((1 - between) * spectrum).astype(np.float32)
    labels = rng.integers(0, clusters, size)
    vectors = np.empty((size, DIM), np.float32)
    for start in range(0, size, 50_000):
        part = labels[start : start + 50_000]
        block = rng.standard_normal((len(part), DIM), dtype=np.float32) * spread
        block += (centres[part] + mean).astype(np.float32)
        vectors[start : start + len(part)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def top_variance_share(vectors: np.ndarray, dim: int = 128) -> float:
    """Share of the variance around the mean held by the top `dim` principal components."""
    rng = np.random.default_rng(0)
    sample = vectors[rng.choice(len(vectors), min(len(vectors), 20_000), replace=False)]
    sample = sample - sample.mean(axis=0)
    values = np.linalg.eigvalsh(sample.T @ sample)
    return round(float(values[-dim:].sum() / values.sum()), 3)


def build_index(directory: Path, embedder: Embedder, vectors: np.ndarray, ann: AnnSettings):
    """Commit `vectors` as a new index, its vector index chosen by `ann`; returns seconds."""
    store = IndexStore.create(directory, embedder.space)
    categories = ["Dress", "Coat", "Shirt", "Bag", "Sneaker"]
    started = time.perf_counter()
    with store.writer(ann=ann) as writer:  # one commit: each rewrites the whole matrix
        for n, vector in enumerate(vectors):
            item = Item(
                f"item-{n:07d}",
                f"images/{n}.jpg",
                f"{n:064x}",
                metadata={"category": categories[n % 5]},
            )
            writer.put(item, vector)
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> dict:
    q = statistics.quantiles(samples, n=100)
    return {"p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2)}


def recall_at(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Share of the first `k` found scores that reach the k-th exact score."""
    k = min(k, len(exact))
    return float(np.sum(found[:k] >= exact[k - 1] - 1e-6) / k)


def measure(vectors: np.ndarray, index: VectorIndex, queries: int) -> dict:
    """Exact (`top_k`) and vector index latency (k=10, query row excluded, as the engine asks)
    and recall@5/@10 of the vector index.

    Each kind of search runs its queries in its own loop: interleaved, the BLAS threads that
    exact search leaves spinning for a moment take cores from the next graph search."""
    rows = np.random.default_rng(1).choice(len(vectors), queries, replace=False)

    def exact(query: np.ndarray, row: int) -> np.ndarray:
        mask = np.zeros(len(vectors), bool)
        mask[row] = True
        return top_k(vectors, query, K, exclude=mask)[1]

    def indexed(query: np.ndarray, row: int) -> np.ndarray:
        return index.search(query, K, excluded=np.array([row]))[1][0]

    def timed(search) -> tuple[list[float], list[np.ndarray]]:
        for row in rows[:3]:  # warm the page cache
            search(np.array(vectors[row]), int(row))
        seconds, found = [], []
        for row in rows:
            query = np.array(vectors[row])
            t = time.perf_counter()
            scores = search(query, int(row))
            seconds.append(time.perf_counter() - t)
            found.append(scores)
        return seconds, found

    exact_s, best = timed(exact)
    index_s, found = timed(indexed)
    pairs = list(zip(found, best, strict=True))
    return {
        "exact": percentiles(exact_s),
        "vector_index_search": percentiles(index_s),
        "recall_at_5": round(float(np.mean([recall_at(f, e, 5) for f, e in pairs])), 4),
        "recall_at_10": round(float(np.mean([recall_at(f, e, 10) for f, e in pairs])), 4),
    }


def index_summary(directory: Path, snapshot: Snapshot) -> dict:
    """What the commit chose for the vector index and measured, and its files' size."""
    params = snapshot.index.params
    files = entry_files(ann_entry(snapshot.state.get("ann", "")))
    disk = sum((directory / name).stat().st_size for name in files)
    return {
        "kind": params["kind"],
        "search_width": params.get("search_width"),
        "recall_at_10": params.get("recall_at_10"),
        "calibration_queries": params.get("queries"),
        "degree": params.get("degree"),
        "build_s": params.get("build_seconds"),
        "files_mb": round(disk / 1e6, 1),
    }


def run_one(name: str, vectors: np.ndarray, directory: Path, embedder: Embedder, args) -> dict:
    size = len(vectors)
    commit_s = build_index(directory, embedder, vectors, AnnSettings(min_rows=args.ann_min_rows))
    del vectors
    before = rss_mb()
    started = time.perf_counter()
    engine = Engine(IndexStore.open(directory), embedder=embedder)
    open_s = time.perf_counter() - started
    rss_after_open = rss_mb() - before
    snapshot = engine.snapshot
    row = {
        "dataset": name,
        "items": size,
        "matrix_mb": round(snapshot.vectors.nbytes / 1e6, 1),
        "top128_variance": top_variance_share(snapshot.vectors),
        "commit_s": round(commit_s, 1),
        "open_s": round(open_s, 3),
        "rss_growth_on_open_mb": round(rss_after_open, 1),
        "vector_index": index_summary(directory, snapshot),
        **measure(snapshot.vectors, snapshot.index, args.queries),
    }
    if size == 10_000 and name == "isotropic":
        photos = sorted(
            (write_demo_catalog(directory.parent / "demo").root / "images").glob("*.png")
        )
        engine.recommend(photos[0], k=5)
        recommend = []
        for photo in photos[:50]:
            t = time.perf_counter()
            engine.recommend(photo, k=5)
            recommend.append(time.perf_counter() - t)
        row["recommend_from_file"] = percentiles(recommend)
        # what the web app and a same_category search do with an upload: recognize, then search
        uploads = {
            "demo PNG 28x28": photos[50:100],
            "JPEG 800x1000": sorted(
                write_jpeg_set(directory.parent / "jpeg", count=50).glob("*.jpg")
            ),
        }
        row["recognize_then_recommend"] = {}
        for kind, files in uploads.items():
            engine.recognize(files[0].read_bytes())
            both = []
            for photo in files[1:]:
                data = photo.read_bytes()
                t = time.perf_counter()
                engine.recognize(data)
                engine.recommend(data, k=5)
                both.append(time.perf_counter() - t)
            row["recognize_then_recommend"][kind] = percentiles(both)
    return row


SMALL_COMMIT = 100  # items added and removed before timing a first search again


def first_search_of_a_new_engine(directory: Path, embedder: Embedder, query: np.ndarray) -> float:
    """Seconds from opening the index to the first search's answer (another process, a CLI)."""
    started = time.perf_counter()
    Engine(IndexStore.open(directory), embedder=embedder).search_vector(query, K)
    return time.perf_counter() - started


def small_commit_then_first_search(directory: Path, embedder: Embedder, snapshot):
    """Commit SMALL_COMMIT new items and SMALL_COMMIT removals; the commit's seconds and those
    of a new engine's first search (only the new rows are projected)."""
    rng = np.random.default_rng(2)
    picks = rng.choice(len(snapshot), SMALL_COMMIT, replace=False)
    fresh = np.asarray(snapshot.vectors[picks]) + rng.normal(
        0, 0.01, (SMALL_COMMIT, snapshot.header.dim)
    )
    fresh = (fresh / np.linalg.norm(fresh, axis=1, keepdims=True)).astype(np.float32)
    store = IndexStore.open(directory)
    started = time.perf_counter()
    with store.writer() as writer:
        for n, vector in enumerate(fresh):
            writer.put(Item(f"fresh-{n}", f"fresh-{n}.png", f"fresh-{n}"), vector)
        for item in snapshot.items[:SMALL_COMMIT]:
            writer.remove(item.id)
    commit_s = round(time.perf_counter() - started, 2)
    return commit_s, first_search_of_a_new_engine(directory, embedder, fresh[0])


def add_one_then_first_search(directory: Path, embedder: Embedder, snapshot) -> float:
    """Commit one new item (as `Engine.add_item` does); seconds of a new engine's first search
    (the new row is projected into the tuned space's spare rows)."""
    vector = np.asarray(snapshot.vectors[0]) + np.random.default_rng(3).normal(0, 0.01, DIM)
    vector = (vector / np.linalg.norm(vector)).astype(np.float32)
    with IndexStore.open(directory).writer() as writer:
        writer.put(Item("added-0", "added-0.png", "added-0"), vector)
    return first_search_of_a_new_engine(directory, embedder, vector)


def run_tuned(directory: Path, labels: np.ndarray, embedder: Embedder, args) -> dict:
    """Tune the index on its labels, then time `Engine.search_vector` in the projected space
    (searched with the tuned space's own vector index) against exact search of that space."""
    store = IndexStore.open(directory)
    snapshot = store.snapshot()
    names = np.array(CLASS_NAMES)[labels]
    started = time.perf_counter()
    projection = fit_mlp_projection(np.asarray(snapshot.vectors), names, epochs=args.tuned_epochs)
    tune_s = time.perf_counter() - started
    projection.save(directory)
    engine = Engine(store, embedder=embedder)
    queries = np.random.default_rng(1).choice(len(snapshot), args.queries, replace=False)
    started = time.perf_counter()
    engine.search_vector(snapshot.vectors[queries[0]], K)  # projects the matrix, builds its index
    first_s = time.perf_counter() - started
    reopened_s = first_search_of_a_new_engine(directory, embedder, snapshot.vectors[queries[1]])
    commit_s, after_commit_s = small_commit_then_first_search(directory, embedder, snapshot)
    after_adding_s = add_one_then_first_search(
        directory, embedder, IndexStore.open(directory).snapshot()
    )
    store = IndexStore.open(directory)
    snapshot = store.snapshot()
    engine = Engine(store, embedder=embedder)
    engine.search_vector(snapshot.vectors[queries[0]], K)
    space_mb = sum(f.stat().st_blocks * 512 for f in (directory / TUNED_FOLDER).iterdir()) / 2**20
    _, matrix = engine._search_space(engine.snapshot)
    index = engine._vector_index(engine.snapshot)
    exact_s, exact, served_s, served = [], [], [], []
    for row in queries:
        projected = projection.apply(snapshot.vectors[row])
        mask = np.zeros(len(snapshot), bool)
        mask[row] = True
        t = time.perf_counter()
        exact.append(top_k(matrix, projected, K, exclude=mask)[1])
        exact_s.append(time.perf_counter() - t)
    for row in queries:
        t = time.perf_counter()
        results = engine.search_vector(snapshot.vectors[row], K, exclude_rows=[int(row)])
        served_s.append(time.perf_counter() - t)
        served.append(np.array([r.score for r in results], np.float32))
    pairs = list(zip(served, exact, strict=True))
    return {
        "dataset": "real, tuned",
        "items": len(snapshot),
        "projected_dim": projection.dim,
        "tune_s": round(tune_s, 1),
        "first_search_s": round(first_s, 1),
        "first_search_of_another_engine_s": round(reopened_s, 2),
        "small_commit": {"added": SMALL_COMMIT, "removed": SMALL_COMMIT, "commit_s": commit_s},
        "first_search_after_small_commit_s": round(after_commit_s, 2),
        "first_search_after_adding_one_item_s": round(after_adding_s, 2),
        "tuned_space_on_disk_mb": round(space_mb, 1),
        "vector_index": {
            "kind": index.params["kind"],
            "search_width": index.params.get("search_width"),
            "recall_at_10": index.params.get("recall_at_10"),
        },
        "exact_in_projected_space": percentiles(exact_s),
        "engine_search_vector": percentiles(served_s),
        "recall_at_10": round(float(np.mean([recall_at(f, e, 10) for f, e in pairs])), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--datasets", default="isotropic,clustered,real")
    parser.add_argument("--real", default="/tmp/fmnist-lite0.npz")
    parser.add_argument(
        "--ann-min-rows",
        type=int,
        default=DEFAULT_ANN.min_rows,
        help="commit an HNSW graph from this many items (0: at every size); exact below",
    )
    parser.add_argument(
        "--tuned-epochs",
        type=int,
        default=0,
        help="also tune the real index on its labels (this many epochs) and time the engine",
    )
    parser.add_argument("--out", default="benchmarks/results/query_latency.json")
    args = parser.parse_args()
    embedder = load_embedder("efficientnet-lite0")
    datasets = args.datasets.split(",")
    runs: list[tuple[str, int]] = [
        (name, int(size)) for name in datasets if name != "real" for size in args.sizes.split(",")
    ]
    if "real" in datasets and Path(args.real).is_file():
        runs.append(("real", 0))
    load_before = round(os.getloadavg()[0], 2)  # other processes make timings noisy
    rows = []
    for name, size in runs:
        with tempfile.TemporaryDirectory() as tmp:
            if name == "real":
                with np.load(args.real) as data:
                    vectors = np.concatenate([data["tx"], data["sx"]]).astype(np.float32)
                    labels = np.concatenate([data["ty"], data["sy"]])
            elif name == "text":
                vectors = clustered(size)
            else:
                vectors = {"isotropic": isotropic, "clustered": clustered}[name](size)
            if name == "text":
                row = run_text(vectors, Path(tmp) / "ix", embedder, args.queries, percentiles)
            else:
                row = run_one(name, vectors, Path(tmp) / "ix", embedder, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if name == "real" and args.tuned_epochs:
                rows.append(run_tuned(Path(tmp) / "ix", labels, embedder, args))
                print(json.dumps(rows[-1]), flush=True)
    result = {
        **environment("numpy", "onnxruntime", "faiss-cpu"),
        "load_average_before_after": [load_before, round(os.getloadavg()[0], 2)],
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "settings": {
            "ann_min_rows": args.ann_min_rows,
            "target_recall_at_10": DEFAULT_ANN.target_recall,
            "degree": DEFAULT_ANN.degree,
            "build_width": DEFAULT_ANN.build_width,
            "k": K,
            "queries": args.queries,
        },
        "rows": rows,
    }
    save(args.out, result)
    print_table(rows)
    print_text_rows(rows)


def print_table(rows: list[dict]) -> None:
    print(
        f"\n{'dataset':>9} {'items':>8} {'open s':>6} {'RSS+MB':>6} {'exact p50':>9} {'p99':>6} "
        f"{'index':>6} {'width':>5} {'built R@10':>10} {'index p50':>9} {'p99':>6} "
        f"{'R@5':>6} {'R@10':>6}"
    )
    for r in rows:
        if "exact" not in r:  # the tuned and text rows, printed below
            continue
        index = r["vector_index"]
        print(
            f"{r['dataset']:>9} {r['items']:>8,} {r['open_s']:>6} {r['rss_growth_on_open_mb']:>6} "
            f"{r['exact']['p50_ms']:>9} {r['exact']['p99_ms']:>6} "
            f"{index['kind']:>6} {index['search_width'] or '-':>5} "
            f"{index['recall_at_10'] or '-':>10} "
            f"{r['vector_index_search']['p50_ms']:>9} {r['vector_index_search']['p99_ms']:>6} "
            f"{r['recall_at_5']:>6} {r['recall_at_10']:>6}"
        )
    for r in rows:
        if "engine_search_vector" in r:
            print(
                f"tuned real index ({r['items']:,} items, {r['projected_dim']}-d): engine search "
                f"p50 {r['engine_search_vector']['p50_ms']} ms ({r['vector_index']['kind']} index, "
                f"search width {r['vector_index']['search_width']}, "
                f"recall@10 {r['recall_at_10']}), exact in the projected space p50 "
                f"{r['exact_in_projected_space']['p50_ms']} ms; first search "
                f"{r['first_search_s']} s (projects the matrix, builds its index and writes both, "
                f"{r['tuned_space_on_disk_mb']} MB); another engine's first search "
                f"{r['first_search_of_another_engine_s']} s; after a commit of "
                f"{r['small_commit']['added']} new and {r['small_commit']['removed']} removed "
                f"items, {r['first_search_after_small_commit_s']} s; after adding one item, "
                f"{r['first_search_after_adding_one_item_s']} s"
            )
    for r in rows:
        if "recommend_from_file" in r:
            rec = r["recommend_from_file"]
            print(
                f"recommend from file, {r['items']:,} items: p50 {rec['p50_ms']} ms, "
                f"p99 {rec['p99_ms']} ms"
            )
            for kind, both in r["recognize_then_recommend"].items():
                print(
                    f"recognize then recommend, {kind} upload: p50 {both['p50_ms']} ms, "
                    f"p99 {both['p99_ms']} ms"
                )


if __name__ == "__main__":
    main()
