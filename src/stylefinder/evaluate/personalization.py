"""Offline evaluation of personal recommendations with simulated shoppers on a labeled catalog.

The shoppers and the metrics of their lists come from `simulated_shoppers`: each prefers one or
two categories, likes items of a neighbourhood in each and dislikes a few elsewhere; their
latest likes are kept back, the rest are the events the recommenders see. Nothing is written
to the index: profiles are built in memory and ranked with the same function
`Engine.recommend_for_user` uses, in the same (tuned, if any) search space.

Metrics of the top `k` (10) per shopper, averaged over shoppers: hit rate, precision
(preferred categories), nDCG, intra-list diversity and catalog coverage (`list_metrics`).

Baselines: random items, the most popular items (likes of all simulated shoppers), and the
nearest neighbours of the shopper's last liked item; plus an ablation, the nearest neighbours of
the weighted mean of the shopper's likes (one profile vector instead of stylefinder's kernel over
the liked items). Every method leaves out items the shopper already interacted with. The MMR
sweep shows how accuracy trades against diversity; stylefinder's metrics are also split by
shoppers with one and with two preferred categories.

Caveat: tastes are neighbourhoods in the index's own embedding space, so hit rate and nDCG
favour embedding-based methods; precision@k only depends on the labels.

Example:
    >>> result = evaluate_personalization("shop-index", "category", users=200)  # doctest: +SKIP
    >>> round(result["methods"]["stylefinder"]["precision@10"], 3)  # doctest: +SKIP
    0.957
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from stylefinder.engine import Engine
from stylefinder.evaluate.simulated_shoppers import NOW, Shopper, list_metrics, simulate_shoppers
from stylefinder.index.search import top_k
from stylefinder.index.store import IndexStore
from stylefinder.recommend.personal import (
    Profile,
    ProfileSettings,
    build_profile,
    popularity_vector,
    rank,
)

DEFAULT_SWEEP = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
STYLEFINDER = "stylefinder"
BASELINES = ("random", "most popular", "nearest to last like")
MEAN_PROFILE = "mean of likes"  # ablation: one mean vector instead of the kernel over likes


def evaluate_personalization(
    engine_or_index_dir: Engine | str | Path,
    label_column: str,
    *,
    users: int = 300,
    seed: int = 0,
    k: int = 10,
    likes: int = 10,
    dislikes: int = 3,
    held_out: float = 0.3,
    two_categories: float = 0.5,
    taste_pool: int = 50,
    settings: ProfileSettings | None = None,
    diversity: float | None = None,
    sweep: Sequence[float] = DEFAULT_SWEEP,
    report_dir: str | Path | None = None,
    command: str = "stylefinder eval personalization",
) -> dict:
    """Simulate shoppers on the index's labeled items and compare stylefinder's personal
    ranking with three baselines; with `report_dir`, write report.json, report.md and
    accuracy_vs_diversity.png there.

    Returns a dict with "methods" ({name: metrics}), "sweep" (metrics per MMR weight),
    "simulation" (its parameters), "index" and "files".

    Example:
        >>> result = evaluate_personalization("shop-index", "category",
        ...                                   report_dir="report")  # doctest: +SKIP
        >>> result["methods"]["most popular"]["precision@10"]  # doctest: +SKIP
        0.18
    """
    started = time.perf_counter()
    engine = (
        engine_or_index_dir
        if isinstance(engine_or_index_dir, Engine)
        else Engine.open(engine_or_index_dir)
    )
    settings = settings or ProfileSettings()
    by_row, raw, matrix, projection = _catalog_rows(engine)
    values = (None if item is None else item.metadata.get(label_column) for item in by_row)
    labels = [None if value in (None, "") else str(value) for value in values]  # 0 is a label
    labeled = sum(label is not None for label in labels)
    if labeled < 2:
        raise ValueError(f"fewer than two items have a {label_column!r} metadata value")
    item_ids = ["" if item is None else item.id for item in by_row]
    row_of = {item.id: row for row, item in enumerate(by_row) if item is not None}
    shoppers = simulate_shoppers(
        raw,
        labels,
        item_ids,
        users=users,
        seed=seed,
        likes=likes,
        dislikes=dislikes,
        held_out=held_out,
        two_categories=two_categories,
        taste_pool=taste_pool,
    )
    counts: dict[str, dict[str, int]] = {}
    for shopper in shoppers:
        for event in shopper.events:
            kinds = counts.setdefault(event.item_id, {})
            kinds[event.kind] = kinds.get(event.kind, 0) + 1
    popularity = popularity_vector(counts, row_of, len(by_row), settings=settings)
    profiles = [build_profile(s.events, row_of, settings=settings, now=NOW) for s in shoppers]

    def personal(weight: float | None) -> np.ndarray:
        out = np.full((len(shoppers), k), -1, np.int64)
        for n, profile in enumerate(profiles):
            rows, _ = rank(matrix, profile, k, diversity=weight, settings=settings)
            out[n, : len(rows)] = rows
        return out

    results = {STYLEFINDER: personal(diversity)}
    results.update(_baselines(matrix, shoppers, popularity, k, seed))
    results[MEAN_PROFILE] = _mean_profile(matrix, profiles, k)
    methods = {name: list_metrics(rows, shoppers, labels, raw) for name, rows in results.items()}
    default = settings.diversity if diversity is None else diversity
    segments = {}
    for name, size in (("one category", 1), ("two categories", 2)):
        picked = [n for n, s in enumerate(shoppers) if len(s.preferred) == size]
        if picked:
            group = [shoppers[n] for n in picked]
            segments[name] = {
                method: list_metrics(results[method][picked], group, labels, raw)
                for method in (STYLEFINDER, MEAN_PROFILE)
            }
    curve = []
    for weight in sweep:
        rows = results[STYLEFINDER] if weight == default else personal(weight)
        curve.append({"diversity_weight": weight, **list_metrics(rows, shoppers, labels, raw)})
    popular = methods["most popular"][f"precision@{k}"]
    header = engine.store.header
    result = {
        "index": {
            "directory": (
                str(engine.store.directory)
                if isinstance(engine.store, IndexStore)
                else engine.store.target.described
            ),
            "items": len(row_of),
            "labeled_items": labeled,
            "label_column": label_column,
            "classes": len({label for label in labels if label}),
            "backbone": header.backbone,
            "pooling": header.pooling,
            "dim": header.dim,
            "projection": projection.dim if projection is not None else None,
        },
        "simulation": {
            "users": users,
            "seed": seed,
            "k": k,
            "likes": likes,
            "dislikes": dislikes,
            "held_out": held_out,
            "two_categories": two_categories,
            "taste_pool": taste_pool,
            "two_category_shoppers": sum(len(s.preferred) == 2 for s in shoppers),
        },
        "settings": {
            **asdict(settings),
            "kind_weights": dict(settings.kind_weights),
        },
        "diversity_weight": default,
        "methods": methods,
        "segments": segments,
        "precision_vs_most_popular": methods[STYLEFINDER][f"precision@{k}"] / popular
        if popular
        else None,
        "sweep": curve,
        "seconds": round(time.perf_counter() - started, 2),
        "files": [],
    }
    if report_dir is not None:
        files = write_personalization_report(result, report_dir, command)
        result["files"] = [str(path) for path in files]
    return result


def _baselines(
    matrix: np.ndarray, shoppers: Sequence[Shopper], popularity: np.ndarray, k: int, seed: int
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    size = len(matrix)
    by_popularity = np.lexsort((np.arange(size), -popularity))
    out = {name: np.full((len(shoppers), k), -1, np.int64) for name in BASELINES}
    for n, shopper in enumerate(shoppers):
        seen = np.zeros(size, bool)
        seen[list(shopper.seen)] = True
        eligible = np.flatnonzero(~seen)
        picked = rng.choice(eligible, min(k, len(eligible)), replace=False)
        out["random"][n, : len(picked)] = picked
        popular = by_popularity[~seen[by_popularity]][:k]
        out["most popular"][n, : len(popular)] = popular
        rows, _ = top_k(matrix, np.asarray(matrix[shopper.last_liked]), k, exclude=seen)
        out["nearest to last like"][n, : len(rows)] = rows
    return out


def _mean_profile(matrix: np.ndarray, profiles: Sequence[Profile], k: int) -> np.ndarray:
    out = np.full((len(profiles), k), -1, np.int64)
    for n, profile in enumerate(profiles):
        if profile.cold:
            continue
        vectors = np.asarray(matrix[profile.positive_rows], np.float32)
        centre = profile.positive_weights @ vectors
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        blocked = np.zeros(len(matrix), bool)
        blocked[profile.excluded_rows] = True
        rows, _ = top_k(matrix, centre.astype(np.float32), k, exclude=blocked)
        out[n, : len(rows)] = rows
    return out


# -- report ----------------------------------------------------------------------------------


def write_personalization_report(result: dict, directory: str | Path, command: str) -> list[Path]:
    """Write report.json, report.md and accuracy_vs_diversity.png for a result of
    `evaluate_personalization`.

    Example:
        >>> write_personalization_report(result, "report", "eval")  # doctest: +SKIP
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": command,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "versions": {p: _version(p) for p in ("stylefinder", "numpy", "matplotlib")},
        **{key: value for key, value in result.items() if key != "files"},
    }
    files = [out / "report.json", out / "report.md", out / "accuracy_vs_diversity.png"]
    files[0].write_text(json.dumps(payload, indent=2) + "\n")
    files[1].write_text(_markdown(payload))
    _plot(payload, files[2])
    return files


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _metric_names(k: int) -> list[str]:
    return [
        f"hit_rate@{k}",
        f"precision@{k}",
        f"ndcg@{k}",
        "intra_list_diversity",
        "coverage",
    ]


def _markdown(payload: dict) -> str:
    index, sim = payload["index"], payload["simulation"]
    k = sim["k"]
    names = _metric_names(k)
    ratio = payload["precision_vs_most_popular"]
    space = f"projected to {index['projection']}-d" if index["projection"] else "raw"
    lines = [
        "# Personalization evaluation",
        "",
        f"{sim['users']} simulated shoppers (seed {sim['seed']}, "
        f"{sim['two_category_shoppers']} preferring two categories) on the "
        f"{index['labeled_items']:,} items of `{index['directory']}` labeled by "
        f"`{index['label_column']}` ({index['classes']} classes; {index['backbone']}, "
        f"{space} embeddings). Each likes about {sim['likes']} items near a random anchor of "
        f"each preferred category (the {sim['taste_pool']} most similar), dislikes "
        f"{sim['dislikes']} elsewhere; the latest {sim['held_out']:.0%} of the likes are held "
        f"out. stylefinder ranks with MMR weight {payload['diversity_weight']:g}. "
        f"Command: `{payload['command']}`.",
        "",
        "| method | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *[
            f"| {name} | " + " | ".join(f"{m[n]:.3f}" for n in names) + " |"
            for name, m in payload["methods"].items()
        ],
        "",
        f"`{MEAN_PROFILE}` is an ablation: the nearest items to one weighted mean of the likes. "
        "By shoppers' number of preferred categories:",
        "",
        "| shoppers | method | " + " | ".join(names[:3]) + " |",
        "|---|---|" + "---|" * 3,
        *[
            f"| {segment} | {method} | " + " | ".join(f"{m[n]:.3f}" for n in names[:3]) + " |"
            for segment, methods in payload["segments"].items()
            for method, m in methods.items()
        ],
        "",
        f"precision@{k}: stylefinder / most popular = "
        + (f"{ratio:.2f}x" if ratio is not None else "n/a (most popular scored 0)"),
        "",
        "Accuracy against diversity as the MMR weight varies:",
        "",
        "| MMR weight | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *[
            f"| {row['diversity_weight']:.2f} | "
            + " | ".join(f"{row[n]:.3f}" for n in names)
            + " |"
            for row in payload["sweep"]
        ],
        "",
        "![accuracy against diversity](accuracy_vs_diversity.png)",
        "",
        "Tastes are neighbourhoods in the index's own embedding space, so hit rate and nDCG "
        f"favour embedding-based methods; precision@{k} depends on the labels only.",
        "",
    ]
    return "\n".join(lines)


def _plot(payload: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = payload["simulation"]["k"]
    sweep = payload["sweep"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, metric in zip(axes, (f"precision@{k}", f"hit_rate@{k}"), strict=True):
        xs = [row["intra_list_diversity"] for row in sweep]
        ys = [row[metric] for row in sweep]
        ax.plot(xs, ys, "o-", color="#4c78a8", label="stylefinder (MMR weight)")
        for row, x, y in zip(sweep, xs, ys, strict=True):
            ax.annotate(
                f"{row['diversity_weight']:g}", (x, y), textcoords="offset points", xytext=(4, 4)
            )
        markers = {"random": "x", "most popular": "s", "nearest to last like": "^"}
        markers[MEAN_PROFILE] = "D"
        for name, marker in markers.items():
            m = payload["methods"][name]
            ax.plot(m["intra_list_diversity"], m[metric], marker, markersize=9, label=name)
        ax.set_xlabel("intra-list diversity (mean 1 - cosine)")
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Accuracy against diversity ({payload['simulation']['users']} shoppers)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _catalog_rows(engine: Engine):
    """The rows of the engine's catalog (items, None for a removed item's empty row), their raw
    vectors, the matrix queries search (projected when the catalog is tuned) and the projection.
    A PostgreSQL catalog's are read once, by id."""
    view = engine.view
    store = engine.store
    if isinstance(store, IndexStore):
        snapshot = view.snapshot
        raw = np.asarray(snapshot.vectors, np.float32)
        return snapshot.items.by_row(), raw, view.matrix, view.projection
    items = store.items(store.ids())
    raw = store.vectors_of([item.id for item in items])
    projection = view.projection
    matrix = raw if projection is None else projection.apply(raw)
    return items, raw, matrix, projection
