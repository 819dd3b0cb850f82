"""Text and hybrid search latency on an index with shop-like titles (used by
`query_latency.py --datasets text`).

Each item gets a title of five words drawn from a shop vocabulary (brand, style, colour,
material, garment: "Brava relaxed navy linen shirt") and a category; vectors are the clustered
ones of `query_latency.py`. Queries are 1-3 words of the vocabulary ("navy linen shirt");
timed through `Engine.search` as the API and the app call it:

- text alone, matches only (`expand=False`) and expanded by the look of the best matches;
- text alone with a category filter;
- hybrid: text with a query vector (a catalog row's, so no image embedding is timed), the
  rankings fused.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from stylefinder.engine import Engine
from stylefinder.index.store import IndexStore
from stylefinder.recommend import hybrid
from stylefinder.types import Item

BRANDS = [
    f"{a}{b}"
    for a in ("Bra", "Co", "Mi", "Tes", "Ul", "Ver", "Zan", "Lo")
    for b in ("va", "rel", "no", "ssa", "tix", "mora", "den", "quin")
]
STYLES = [
    "relaxed",
    "slim",
    "classic",
    "oversized",
    "cropped",
    "vintage",
    "essential",
    "tailored",
    "soft",
    "washed",
]
COLOURS = [
    "navy",
    "red",
    "white",
    "black",
    "grey",
    "beige",
    "green",
    "blue",
    "pink",
    "yellow",
    "olive",
    "maroon",
    "cream",
]
MATERIALS = [
    "linen",
    "cotton",
    "wool",
    "denim",
    "silk",
    "leather",
    "cashmere",
    "jersey",
    "corduroy",
    "satin",
]
GARMENTS = [
    "shirt",
    "dress",
    "coat",
    "jacket",
    "jeans",
    "trousers",
    "skirt",
    "sweater",
    "hoodie",
    "blazer",
    "shorts",
    "t-shirt",
    "cardigan",
    "parka",
    "sneakers",
    "boots",
    "sandals",
    "bag",
    "scarf",
    "vest",
]
CATEGORIES = ["Tops", "Bottoms", "Outerwear", "Shoes", "Accessories"]


def titles(size: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    parts = [BRANDS, STYLES, COLOURS, MATERIALS, GARMENTS]
    picks = [rng.integers(0, len(p), size) for p in parts]
    return [" ".join(p[c[n]] for p, c in zip(parts, picks, strict=True)) for n in range(size)]


def build(directory: Path, embedder, vectors: np.ndarray) -> float:
    """Commit `vectors` with titles and categories; returns seconds."""
    store = IndexStore.create(directory, embedder.space)
    started = time.perf_counter()
    with store.writer() as writer:
        for n, (vector, title) in enumerate(zip(vectors, titles(len(vectors)), strict=True)):
            metadata = {"title": title, "category": CATEGORIES[n % 5]}
            item = Item(f"item-{n:07d}", f"images/{n}.jpg", f"{n:064x}", metadata=metadata)
            writer.put(item, vector)
    return time.perf_counter() - started


def queries(count: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    shapes = [[COLOURS, GARMENTS], [COLOURS, MATERIALS, GARMENTS], [GARMENTS], [MATERIALS]]
    out = []
    for n in range(count):
        shape = shapes[n % len(shapes)]
        out.append(" ".join(p[int(rng.integers(0, len(p)))] for p in shape))
    return out


def run_text(vectors: np.ndarray, directory: Path, embedder, count: int, percentiles) -> dict:
    build_s = build(directory, embedder, vectors)
    engine = Engine.open(directory, embedder=embedder)
    asked = queries(count)
    rows = np.random.default_rng(2).integers(0, len(vectors), count)
    engine.search(asked[0], k=10)  # first use: the manifest's pages, the metadata columns
    engine.search(asked[0], k=10, filters={"category": "Tops"})
    cases = {
        "text_only_matches": lambda q, r: engine.search(q, k=10, expand=False),
        "text_only_expanded": lambda q, r: engine.search(q, k=10),
        "text_with_filter": lambda q, r: engine.search(
            q, k=10, filters={"category": "Tops"}, expand=False
        ),
        "hybrid_text_and_vector": lambda q, r: hybrid.hybrid_search(
            engine.view, text=q, vector=engine.view.vectors_of([int(r)])[0], k=10
        ),
        "vector_only": lambda q, r: engine.search_vector(engine.view.vectors_of([int(r)])[0], 10),
    }
    timings = {}
    for name, call in cases.items():
        samples = []
        for query, row in zip(asked, rows, strict=True):
            started = time.perf_counter()
            results = call(query, row)
            samples.append(time.perf_counter() - started)
            assert results, (name, query)
        timings[name] = percentiles(samples)
    return {"dataset": "text", "items": len(vectors), "build_s": round(build_s, 1), **timings}


def print_text_rows(rows: list[dict]) -> None:
    text_rows = [r for r in rows if r.get("dataset") == "text"]
    if not text_rows:
        return
    names = [n for n in text_rows[0] if isinstance(text_rows[0][n], dict)]
    print(f"\n{'text search (ms)':<26}" + "".join(f"{r['items']:>14,} items" for r in text_rows))
    for name in names:
        cells = "".join(f"{r[name]['p50_ms']:>10} / {r[name]['p99_ms']:<8}" for r in text_rows)
        print(f"{name:<26}{cells}   (p50 / p99)")
