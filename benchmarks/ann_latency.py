"""Vector index latency: the library index (faiss HNSW over int8 codes, rescored exactly) served
through `Engine.search_vector`, beside the earlier PCA two-stage search and exact search, on the
same vectors and queries in one run: build, latency, recall@10, filtered search, open time and
memory, and the cost of adding or removing one item.

Datasets (1280-d unit vectors, like efficientnet-lite0 embeddings):

- clustered: the synthetic generator of `query_latency.py` (~100 items a cluster, a power-law
  spectrum calibrated on real embeddings), imported from there: both draw the same vectors.
- fmnist: efficientnet-lite0 embeddings of Fashion-MNIST (`--fmnist`, an .npz with `tx`, `sx`
  and labels `ty`, `sy`; 70,000 rows); skipped with a note when the file is missing. Smaller
  sizes take a random subset. Larger sizes add jittered copies: copy = normalize(real[i] +
  noise), cycling through the real rows, the noise Gaussian in the top 64 principal components
  of the real rows with, along each, `--jitter` (0.5) times the within-class standard deviation
  there. A copy's cosine to its source is then ~0.976 (the real rows' median nearest-neighbour
  cosine is 0.889), so its nearest neighbour is its source rather than any real row, but at 1M
  (~14 copies a source) a sibling copy beats the source for ~2-3% of copies. Random noise moves
  a copy away from every row alike: a real row overtakes the source only when the noise is as
  large as the whole within-class spread (1.5 times it: 1-4% of copies, cosine to the source
  0.83), which would distort the data more than a small fraction should. The share of copies
  whose nearest neighbour is their source is measured on 200 copies (`nn_is_source`).

For each dataset and size the vectors are committed into a fresh index (one writer, `ann=
AnnSettings()`: an HNSW graph from 20,000 rows, its search width calibrated for recall@10 >= 0.98)
and measured with `--queries` rows as queries, each excluding itself (as `Engine.similar` does),
k=10. Recall@10 counts a result as found when its exact score reaches the 10th best exact score
(ties between duplicates are not misses); filtered recall is against exact search over the rows
passing the filter. Each item has a `bucket` metadata value: "p11" for 11% of them, "p01" for 1%.
Filters passing at most `exact_filter_rows` (10,000) rows, or 1% of them, are scored exactly by
the index (`path` in the JSON). Open time is `IndexStore.open` + `Engine(...)` in a fresh
subprocess (median of 3; imports not counted; the page cache is warm, the index was just
written), with its resident memory after opening. Adding one item is a writer's put + commit
(as `Engine.add_item` does), removing one a remove + commit; both change the index measured
last. The baseline (`baseline_two_stage.py`: 128 principal components, pool calibrated to
recall@10 0.99 on the index's rows) is timed on the same memory-mapped matrix without building
results and with its exclude mask made outside the timing, so it is timed a little short.

Usage: python benchmarks/ann_latency.py [--sizes 100000,1000000] [--queries 200]
    [--datasets clustered,fmnist] [--fmnist /tmp/fmnist-lite0.npz] [--out FILE]
Smoke test: --sizes 30000 --queries 50. On a busy machine with few cores, OpenBLAS's threads
make each matrix-vector product wait for a core (~8 ms each on a 2-core box at load 3, 0.3 ms
with one thread): run there with OPENBLAS_NUM_THREADS=1; the JSON records `blas_threads`.
Writes benchmarks/results/ann_latency.json and prints a markdown table. 1M rows need ~6 GB of
disk in the temp folder (`--tmp`) and ~12 GB of memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from baseline_two_stage import fit_basis, fit_two_stage, top_k
from common import environment, save
from query_latency import clustered

from stylefinder.engine import Engine
from stylefinder.index.store import IndexStore
from stylefinder.index.vector_index import AnnSettings, ExactIndex
from stylefinder.types import EmbeddingSpace, Item

DIM = 1280
K = 10
SPACE = EmbeddingSpace("synthetic", "gem", "none", DIM)
JITTER_COMPONENTS = 64  # principal components of the real rows the copies' noise lies in
BLOCK_ROWS = 65_536  # rows scored per step by the exact ground truth
BUCKETS = {"11%": ("p11", 0.11), "1%": ("p01", 0.01)}  # filter name: (bucket value, share)
WARM = 3  # queries run before each timed loop


def rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(seconds: list[float]) -> dict:
    """p50 and p99 of `seconds`, in ms."""
    q = statistics.quantiles(seconds, n=100)
    return {"p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2)}


def median_max(seconds: list[float]) -> dict:
    """Median and maximum of `seconds`, in ms."""
    return {
        "p50_ms": round(statistics.median(seconds) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
        "repeats": len(seconds),
    }


def fmnist(size: int, path: Path, jitter: float, seed: int = 0) -> tuple[np.ndarray, dict]:
    """`size` rows of the Fashion-MNIST embeddings in `path`: a random subset, or every real row
    followed by jittered copies (see the module docstring); and what was done, as a dict.

    Example:
        >>> vectors, info = fmnist(100_000, Path("/tmp/fmnist-lite0.npz"), 0.5)  # doctest: +SKIP
        >>> info["copies"], info["nn_is_source"]  # doctest: +SKIP
        (30000, 1.0)
    """
    with np.load(path, allow_pickle=False) as data:
        real = np.concatenate([data["tx"], data["sx"]]).astype(np.float32)
        labels = np.concatenate([data["ty"], data["sy"]])
    rng = np.random.default_rng(seed)
    if size <= len(real):
        rows = np.sort(rng.choice(len(real), size, replace=False))
        return real[rows], {"real_rows": size, "copies": 0}
    vectors = np.empty((size, DIM), np.float32)
    vectors[: len(real)] = real
    sources = np.arange(size - len(real)) % len(real)
    jitter_copies(vectors[len(real) :], real, labels, sources, jitter, rng)
    sample = len(real) + rng.choice(len(sources), min(200, len(sources)), replace=False)
    nearest = nearest_other(vectors, sample)
    source_of = sources[sample - len(real)]
    cosine = np.einsum("ij,ij->i", vectors[sample], real[source_of])
    info = {
        "real_rows": len(real),
        "copies": len(sources),
        "jitter": jitter,
        "jitter_components": JITTER_COMPONENTS,
        "copy_cosine_to_source_p50": round(float(np.median(cosine)), 4),
        "nn_is_source": round(float(np.mean(nearest == source_of)), 3),
        "nn_checked_copies": len(sample),
    }
    return vectors, info


def jitter_copies(
    out: np.ndarray,
    real: np.ndarray,
    labels: np.ndarray,
    sources: np.ndarray,
    jitter: float,
    rng: np.random.Generator,
) -> None:
    """Write normalize(real[sources] + noise) to `out`: Gaussian noise in the top principal
    components of `real`, `jitter` times the within-class standard deviation along each."""
    mean, basis = fit_basis(real, JITTER_COMPONENTS)
    codes = (real - mean) @ basis.T
    within = np.zeros(JITTER_COMPONENTS)
    for label in np.unique(labels):
        inside = labels == label
        within += codes[inside].var(axis=0) * inside.mean()
    scale = (jitter * np.sqrt(within)).astype(np.float32)
    for start in range(0, len(sources), 50_000):
        part = sources[start : start + 50_000]
        noise = rng.standard_normal((len(part), JITTER_COMPONENTS), dtype=np.float32) * scale
        block = real[part] + noise @ basis
        out[start : start + len(part)] = block / np.linalg.norm(block, axis=1, keepdims=True)


def nearest_other(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each of `rows`, the other row with the highest exact score."""
    asked = np.asarray(vectors[rows], np.float32)
    best = np.full(len(rows), -np.inf, np.float32)
    found = np.zeros(len(rows), np.int64)
    for start in range(0, len(vectors), BLOCK_ROWS):
        scores = asked @ np.asarray(vectors[start : start + BLOCK_ROWS]).T
        hide_self(scores, rows, start)
        top = np.argmax(scores, axis=1)
        value = scores[np.arange(len(rows)), top]
        better = value > best
        best[better], found[better] = value[better], start + top[better]
    return found


def hide_self(scores: np.ndarray, rows: np.ndarray, start: int) -> None:
    """Set each query row's score against itself (in this block of columns) to -inf."""
    inside = np.flatnonzero((rows >= start) & (rows < start + scores.shape[1]))
    scores[inside, rows[inside] - start] = -np.inf


def bucket_values(size: int, seed: int = 2) -> np.ndarray:
    """The `bucket` metadata of `size` items: each filter's value on its share of random items."""
    values = np.full(size, "rest", dtype=object)
    order = np.random.default_rng(seed).permutation(size)
    start = 0
    for value, share in BUCKETS.values():
        count = round(share * size)
        values[order[start : start + count]] = value
        start += count
    return values


def build(directory: Path, vectors: np.ndarray, buckets: np.ndarray) -> dict:
    """Commit `vectors` as a fresh index (one writer, the default ANN settings); the seconds
    spent staging the items and committing them (matrix, graph and manifest)."""
    store = IndexStore.create(directory, SPACE)
    started = time.perf_counter()
    with store.writer(ann=AnnSettings()) as writer:
        for n, vector in enumerate(vectors):
            metadata = {"bucket": buckets[n]}
            writer.put(
                Item(f"item-{n:07d}", f"images/{n}.jpg", f"{n:064x}", metadata=metadata), vector
            )
        staged = time.perf_counter()
        writer.commit()
    committed = time.perf_counter()
    return {"stage_s": round(staged - started, 1), "commit_s": round(committed - staged, 1)}


def exact_kth(vectors: np.ndarray, rows: np.ndarray, masks: dict) -> dict[str, np.ndarray]:
    """For each named mask (None: every row), the 10th best exact score of each query row
    among the other rows the mask passes (-inf where fewer pass); one pass over the matrix."""
    asked = np.asarray(vectors[rows], np.float32)
    best = {name: np.full((len(rows), 0), -np.inf, np.float32) for name in masks}
    for start in range(0, len(vectors), BLOCK_ROWS):
        scores = asked @ np.asarray(vectors[start : start + BLOCK_ROWS]).T
        hide_self(scores, rows, start)
        for name, mask in masks.items():
            part = (
                scores
                if mask is None
                else np.where(mask[start : start + scores.shape[1]], scores, -np.inf)
            )
            merged = np.concatenate([best[name], part], axis=1)
            if merged.shape[1] > K:
                merged = -np.partition(-merged, K - 1, axis=1)[:, :K]
            best[name] = merged
    return {
        name: np.min(b, axis=1) if b.shape[1] >= K else np.full(len(rows), -np.inf)
        for name, b in best.items()
    }


def timed(search: Callable, count: int, prepare: Callable | None = None) -> dict:
    """Run `search(i, prepare(i))` for queries 0..count-1 after warming up, `prepare` (if any)
    before the timer starts; seconds and (scores, buckets) of each, and the first call's seconds
    (a filter's column is read then)."""
    prepare = prepare or (lambda i: None)
    started = time.perf_counter()
    search(0, prepare(0))
    first = time.perf_counter() - started
    for i in range(1, min(WARM, count)):
        search(i, prepare(i))
    seconds, found = [], []
    for i in range(count):
        prepared = prepare(i)
        started = time.perf_counter()
        result = search(i, prepared)
        seconds.append(time.perf_counter() - started)
        found.append(result)
    return {"seconds": seconds, "found": found, "first_s": first}


def summary(run: dict, kth: np.ndarray, wanted: str | None = None) -> dict:
    """Latency, recall@10 against `kth`, how many queries got k results, and how many results
    were outside the filter (bucket != `wanted`)."""
    recalls, full, outside = [], 0, 0
    floors = kth[: len(run["found"])]  # exact search times fewer queries
    for (scores, buckets), floor in zip(run["found"], floors, strict=True):
        recalls.append(np.count_nonzero(np.asarray(scores[:K]) >= floor - 1e-6) / K)
        full += len(scores) >= K
        outside += sum(wanted is not None and b != wanted for b in buckets)
    return {
        **percentiles(run["seconds"]),
        "first_ms": round(run["first_s"] * 1000, 1),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "k_returned": f"{full}/{len(run['found'])}",
        "results_outside_filter": outside,
    }


def engine_search(engine: Engine, asked: np.ndarray, rows: np.ndarray, filters: dict | None):
    """`Engine.search_vector` for query i: its row excluded, with `filters`."""

    def search(i: int, _=None):
        results = engine.search_vector(asked[i], K, exclude_rows=[int(rows[i])], filters=filters)
        return [r.score for r in results], [r.metadata.get("bucket") for r in results]

    return search


def index_search(index: ExactIndex, asked, rows, allowed, buckets):
    """`ExactIndex.search` for query i: its row excluded, only `allowed` rows (None: all)."""

    def search(i: int, _=None):
        found, scores = index.search(asked[i], K, allowed=allowed, excluded=[int(rows[i])])
        kept = found[0] >= 0
        return scores[0][kept], buckets[found[0][kept]].tolist()

    return search


def baseline_search(vectors, coarse, asked, rows, passing, buckets):
    """The old two-stage `top_k` for query i with its exclude mask (query row and rows outside
    `passing`; None: every row passes), and the function that makes that mask."""

    def search(i: int, exclude: np.ndarray):
        found, scores = top_k(vectors, asked[i], K, exclude=exclude, coarse=coarse)
        return scores, buckets[found].tolist()

    def prepare(i: int) -> np.ndarray:
        exclude = np.zeros(len(vectors), bool) if passing is None else ~passing
        exclude[rows[i]] = True
        return exclude

    return search, prepare


_OPEN_SCRIPT = r"""
import json, statistics, sys, time
from pathlib import Path

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

started = time.perf_counter()
import numpy as np
import faiss  # noqa: F401
import stylefinder.index.hnsw  # noqa: F401
from stylefinder.index.store import IndexStore
from stylefinder.engine import Engine
imported = time.perf_counter()
before = rss()
engine = Engine(IndexStore.open(sys.argv[1]))
opened = time.perf_counter()
after = rss()
row = int(sys.argv[2])
query = np.array(engine.snapshot.vectors[row])
t = time.perf_counter()
engine.search_vector(query, 10, exclude_rows=[row])
first = time.perf_counter() - t
print(json.dumps({
    "import_s": imported - started, "open_s": opened - imported, "rss_mb": after,
    "rss_growth_mb": after - before, "first_search_ms": first * 1000,
    "rss_after_first_search_mb": rss(), "index": type(engine.snapshot.index).__name__,
}))
"""


def open_in_subprocess(directory: Path, row: int, repeats: int) -> dict:
    """Median open time (IndexStore.open + Engine) over `repeats` fresh processes, their
    resident memory after opening and the first search's time."""
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", _OPEN_SCRIPT, str(directory), str(row)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode:
            raise RuntimeError(f"opening the index in a subprocess failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key != "index"}
    return {
        "open_s": round(median["open_s"], 3),
        "rss_mb": round(median["rss_mb"], 1),
        "rss_growth_mb": round(median["rss_growth_mb"], 1),
        "first_search_ms": round(median["first_search_ms"], 1),
        "rss_after_first_search_mb": round(median["rss_after_first_search_mb"], 1),
        "import_s": round(median["import_s"], 2),
        "index": runs[0]["index"],
        "repeats": repeats,
    }


def add_and_remove(store: IndexStore, snapshot, adds: int, removes: int) -> tuple[dict, dict]:
    """Time `adds` commits of one new item each, then `removes` commits removing one item each
    (a writer opened on the latest snapshot, as `Engine.add_item` and `remove_item` do)."""
    rng = np.random.default_rng(3)
    added = []
    for n in range(adds):
        vector = np.asarray(snapshot.vectors[rng.integers(len(snapshot))], np.float64)
        vector = vector + rng.normal(0, 0.01, DIM)
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        item = Item(f"added-{n}", f"added/{n}.jpg", f"added-{n}", metadata={"bucket": "rest"})
        started = time.perf_counter()
        with store.writer(previous=snapshot, ann=AnnSettings()) as writer:
            writer.put(item, vector)
        added.append(time.perf_counter() - started)
        snapshot = writer.base
    removed = []
    for row in rng.choice(len(snapshot) - adds, removes, replace=False):
        item_id = f"item-{row:07d}"
        started = time.perf_counter()
        with store.writer(previous=snapshot, ann=AnnSettings()) as writer:
            writer.remove(item_id)
        removed.append(time.perf_counter() - started)
        snapshot = writer.base
    params = snapshot.index.params if snapshot.index is not None else {}
    return {"add": median_max(added), "remove": median_max(removed)}, params


def filter_path(params: dict, passing: int, live: int) -> str:
    """How the library index answers a filter passing `passing` of `live` rows."""
    if params.get("kind") != "hnsw":
        return "exact"
    limit = max(
        int(params.get("exact_filter_rows", 0)), int(params.get("exact_filter_share", 0) * live)
    )
    return "exact" if passing <= max(K, limit) else "graph"


def measure(name: str, directory: Path, buckets: np.ndarray, built: dict, args) -> list[dict]:
    """Measure and then change the index `build` committed at `directory`; one row per method."""
    size = len(buckets)
    store = IndexStore.open(directory)
    engine = Engine(store)
    snapshot = engine.snapshot
    matrix, params = snapshot.vectors, dict(snapshot.index.params) if snapshot.index else {}
    rows = np.random.default_rng(1).choice(size, args.queries, replace=False)
    asked = np.asarray(matrix[rows], np.float32)
    passing = {f: buckets == value for f, (value, _) in BUCKETS.items()}
    kth = exact_kth(matrix, rows, {"none": None, **passing})
    opened = open_in_subprocess(directory, int(rows[0]), args.open_repeats)

    library = {
        "none": summary(timed(engine_search(engine, asked, rows, None), len(rows)), kth["none"])
    }
    for f, (value, _) in BUCKETS.items():
        run = timed(engine_search(engine, asked, rows, {"bucket": [value]}), len(rows))
        count = int(passing[f].sum())
        library[f] = {
            **summary(run, kth[f], value),
            "passing": count,
            "path": filter_path(params, count, size),
        }

    exact_index = ExactIndex(matrix)
    few = min(args.exact_queries, len(rows))
    exact = {
        "none": summary(
            timed(index_search(exact_index, asked, rows, None, buckets), few), kth["none"]
        )
    }
    for f, (value, _) in BUCKETS.items():
        run = timed(index_search(exact_index, asked, rows, passing[f], buckets), few)
        exact[f] = summary(run, kth[f], value)

    started = time.perf_counter()
    coarse = fit_two_stage(matrix)
    fit_s = time.perf_counter() - started
    baseline = {}
    for f, mask in (("none", None), *passing.items()):
        search, prepare = baseline_search(matrix, coarse, asked, rows, mask, buckets)
        wanted = None if mask is None else BUCKETS[f][0]
        baseline[f] = summary(timed(search, len(rows), prepare), kth[f], wanted)

    writes, params_after = add_and_remove(store, snapshot, args.adds, args.removes)
    common = {"dataset": name, "items": size}
    return [
        {
            **common,
            "method": params.get("kind", "exact"),
            "build_s": built["commit_s"],
            "stage_s": built["stage_s"],
            "graph_build_s": params.get("build_seconds"),
            "search": library,
            "open": opened,
            **writes,
            "params": params,
            "params_after_writes": params_after,
        },
        {
            **common,
            "method": "pca-128 two-stage (5663d63)",
            "build_s": round(fit_s, 1),
            "pool": coarse.pool,
            "calibrated_recall_at_10": coarse.recall,
            "search": baseline,
        },
        {**common, "method": "exact", "queries": few, "search": exact},
    ]


def dataset(name: str, size: int, args) -> tuple[np.ndarray | None, dict]:
    """The vectors of dataset `name` at `size` (None: its file is missing) and notes on them."""
    if name == "clustered":
        return clustered(size), {}
    if name == "fmnist":
        path = Path(args.fmnist)
        if not path.is_file():
            print(f"note: {path} not found; skipping the fmnist dataset", flush=True)
            return None, {"skipped": f"{path} not found"}
        return fmnist(size, path, args.jitter)
    raise SystemExit(f"unknown dataset {name!r}; choose clustered or fmnist")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=50, help="queries timed exactly")
    parser.add_argument("--datasets", default="clustered,fmnist")
    parser.add_argument("--fmnist", default="/tmp/fmnist-lite0.npz")
    parser.add_argument(
        "--jitter", type=float, default=0.5, help="copies' noise, x within-class sd"
    )
    parser.add_argument("--adds", type=int, default=20)
    parser.add_argument("--removes", type=int, default=5)
    parser.add_argument("--open-repeats", type=int, default=3)
    parser.add_argument("--tmp", default=None, help="folder for the temporary indexes")
    parser.add_argument("--out", default="benchmarks/results/ann_latency.json")
    args = parser.parse_args()
    load_before = round(os.getloadavg()[0], 2)  # other processes make timings noisy
    rows, datasets = [], []
    for name in args.datasets.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            vectors, info = dataset(name, size, args)
            datasets.append({"dataset": name, "items": size, **info})
            if vectors is None:
                break
            with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
                buckets = bucket_values(size)
                built = build(Path(tmp) / "ix", vectors, buckets)
                del vectors  # measured from the index's memory-mapped matrix
                for row in measure(name, Path(tmp) / "ix", buckets, built, args):
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    result = {
        **environment("faiss-cpu", "numpy"),
        "load_average_before_after": [load_before, round(os.getloadavg()[0], 2)],
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "settings": {
            "k": K,
            "queries": args.queries,
            "exact_queries": args.exact_queries,
            "adds": args.adds,
            "removes": args.removes,
            "filters": {
                f: {"bucket": value, "share": share} for f, (value, share) in BUCKETS.items()
            },
            "ann": "AnnSettings() defaults",
        },
        "notes": [
            "open: a fresh subprocess, imports not counted; the page cache is warm",
            "pca-128 two-stage: no results built, exclude masks made outside the timing",
        ],
        "datasets": datasets,
        "rows": rows,
    }
    save(args.out, result)
    print_table(rows)


def _cell(row: dict, *keys: str, fmt: str = "{}") -> str:
    value = row
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return "-"
        value = value[key]
    return "-" if value is None else fmt.format(value)


def print_table(rows: list[dict]) -> None:
    """The rows as a markdown table, then the library index's parameters."""
    print(
        "\n| dataset | size | method | build s | p50/p99 ms | recall@10 | filtered 11% p50 / "
        "k-returned | filtered 1% p50 | open s | RSS MB | add p50/max ms | remove p50/max ms |"
    )
    print("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        s = r["search"]
        print(
            f"| {r['dataset']} | {r['items']:,} | {r['method']} | {_cell(r, 'build_s')} | "
            f"{s['none']['p50_ms']} / {s['none']['p99_ms']} | {s['none']['recall_at_10']} | "
            f"{s['11%']['p50_ms']} / {s['11%']['k_returned']} | {s['1%']['p50_ms']} | "
            f"{_cell(r, 'open', 'open_s')} | {_cell(r, 'open', 'rss_mb')} | "
            f"{_cell(r, 'add', 'p50_ms')} / {_cell(r, 'add', 'max_ms')} | "
            f"{_cell(r, 'remove', 'p50_ms')} / {_cell(r, 'remove', 'max_ms')} |"
        )
    print()
    for r in rows:
        p = r.get("params")
        if p and p.get("kind") == "hnsw":
            paths = ", ".join(f"{f} {r['search'][f]['path']}" for f in BUCKETS)
            print(
                f"{r['dataset']} {r['items']:,}: hnsw search width {p.get('search_width')} "
                f"(recall@10 at build {p.get('recall_at_10')} on {p.get('queries')} queries), "
                f"degree {p.get('degree')}, build width {p.get('build_width')}, graph built in "
                f"{p.get('build_seconds')} s; filtered recall: "
                + ", ".join(f"{f} {r['search'][f]['recall_at_10']}" for f in BUCKETS)
                + f" ({paths})"
            )
        if "pool" in r:
            print(
                f"{r['dataset']} {r['items']:,}: pca-128 pool {r['pool']} (calibrated recall@10 "
                f"{r['calibrated_recall_at_10']}); filtered 11% recall "
                f"{r['search']['11%']['recall_at_10']}, 1% {r['search']['1%']['recall_at_10']}"
            )


if __name__ == "__main__":
    main()
