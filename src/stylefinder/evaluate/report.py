"""Evaluation reports people can read: report.json, report.md and PNG plots.

Example:
    >>> write_report(result, "report", index_dir="ix", command="eval")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from stylefinder.catalog.images import load_image
from stylefinder.engine import Engine
from stylefinder.errors import BadImageError
from stylefinder.evaluate.retrieval import RetrievalEvaluation
from stylefinder.index.pg_connect import shown_location


def environment_info() -> dict:
    """When, on what machine and with which versions a report was made."""
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "versions": {p: metadata.version(p) for p in ("stylefinder", "numpy", "onnxruntime")},
    }


def write_report(
    result: RetrievalEvaluation,
    directory: str | Path,
    *,
    index_dir: str | Path,
    command: str,
    samples: int = 6,
    seed: int = 0,
) -> list[Path]:
    """Write report.json, report.md, per_class_precision.png, confusion.png and samples.png."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    engine = Engine.open(index_dir)
    header = engine.store.header
    payload = {
        "command": command,
        **environment_info(),
        "index": {
            "directory": shown_location(index_dir),
            "backbone": header.backbone,
            "pooling": header.pooling,
            "dim": result.dim or header.dim,  # the space scored: the tuned one if any
            "raw_dim": header.dim,
            "tuned": result.tuned,
            "precision": header.precision,
        },
        "warnings": result.warnings,
        "items": result.items,
        "metrics": result.metrics,
        "per_class": result.per_class,
        "text": {"title_column": result.title_column, "metrics": result.text_metrics},
        "meaning": result.meaning_metrics,
        "confusion": {"labels": result.classes, "counts": result.confusion.tolist()},
    }
    files = [out / "report.json", out / "report.md"]
    files[0].write_text(json.dumps(payload, indent=2) + "\n")
    files[1].write_text(_markdown(payload))
    files.append(_per_class_plot(result, out / "per_class_precision.png"))
    files.append(_confusion_plot(result, out / "confusion.png"))
    files.append(_samples_plot(result, engine, out / "samples.png", samples, seed))
    return files


def _markdown(payload: dict) -> str:
    index = payload["index"]
    lines = [
        "# Retrieval evaluation",
        "",
        f"Leave-one-out over {payload['items']:,} labeled items of `{index['directory']}` "
        f"({index['backbone']}, {index['pooling']} pooling, {_space(index)}, "
        f"{index['precision']}). Command: `{payload['command']}`.",
        "",
        *[f"> **Warning:** {warning}\n" for warning in payload.get("warnings", [])],
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value:.4f} |" for name, value in payload["metrics"].items()],
        "",
        "| class | items | precision@5 | top-1 accuracy |",
        "|---|---|---|---|",
        *[
            f"| {row['label']} | {row['items']} | {row.get('precision@5', float('nan')):.3f} | "
            f"{row['top1_accuracy']:.3f} |"
            for row in payload["per_class"]
        ],
        "",
        *_text_lines(payload.get("text") or {}),
        *_meaning_lines(payload.get("meaning"), index["backbone"]),
        "![per-class precision@5](per_class_precision.png)",
        "![confusion of query label and top-1 label](confusion.png)",
        "![sample queries and their 5 results](samples.png)",
        "",
    ]
    return "\n".join(lines)


def _text_lines(text: dict) -> list[str]:
    """The text-to-image section: full-text search of the title column for each label."""
    metrics = text.get("metrics")
    if not metrics:
        return []
    return [
        f"Full-text search of `{text['title_column']}` with each label's name as the query "
        f"({metrics['queries']} queries, scored against the labels):",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value:.4f} |" for name, value in metrics.items() if name != "queries"],
        "",
    ]


def _meaning_lines(metrics: dict | None, backbone: str) -> list[str]:
    """The section of a CLIP-family backbone's embedded label names."""
    if not metrics:
        return []
    return [
        f"Search by meaning ({backbone}'s text tower): each label's name as the prompt "
        f'"a photo of a ..." ({metrics["queries"]} queries) ranking the image vectors, and '
        "zero-shot accuracy (each item's nearest prompt is its label's):",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value:.4f} |" for name, value in metrics.items() if name != "queries"],
        "",
    ]


def _space(index: dict) -> str:
    """The scored space in words: "1280-d", or "2432-d tuned (from 1280-d)"."""
    if index.get("tuned"):
        return f"{index['dim']}-d tuned (from {index['raw_dim']}-d)"
    return f"{index['dim']}-d"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _per_class_plot(result: RetrievalEvaluation, path: Path) -> Path:
    plt = _pyplot()
    values = [row.get("precision@5", 0.0) for row in result.per_class]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(values) + 1.2))
    ax.barh(result.classes, values, color="#4c78a8")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("precision@5")
    ax.set_title(f"Per-class precision@5 (mean {result.metrics.get('precision@5', 0):.3f})")
    for y, v in enumerate(values):
        ax.text(min(v + 0.01, 0.93), y, f"{v:.2f}", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _confusion_plot(result: RetrievalEvaluation, path: Path) -> Path:
    plt = _pyplot()
    counts = result.confusion
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 0.55 * len(result.classes) + 2
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(result.classes)), result.classes, rotation=45, ha="right")
    ax.set_yticks(range(len(result.classes)), result.classes)
    ax.set_xlabel("label of the top result")
    ax.set_ylabel("label of the query")
    if len(result.classes) <= 20:
        for i in range(len(result.classes)):
            for j in range(len(result.classes)):
                if counts[i, j]:
                    colour = "white" if shares[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=8
                    )
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the query label's items")
    ax.set_title("Query label vs top-1 result label")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _samples_plot(
    result: RetrievalEvaluation, engine: Engine, path: Path, samples: int, seed: int
) -> Path:
    plt = _pyplot()
    rng = np.random.default_rng(seed)
    queries = rng.choice(result.items, size=min(samples, result.items), replace=False)
    k = min(5, result.neighbours.shape[1])
    fig, axes = plt.subplots(len(queries), k + 1, figsize=(1.7 * (k + 1), 1.9 * len(queries)))
    axes = np.atleast_2d(axes)
    for row, query in enumerate(queries):
        shown = [query, *result.neighbours[query, :k]]
        for col, item_row in enumerate(shown):
            ax = axes[row, col]
            item = engine.item(result.item_ids[item_row])
            try:
                stored = engine.view.stored_image(item)  # an API item's, in the database
                ax.imshow(load_image(stored if stored is not None else engine.image_path(item)))
            except BadImageError:  # a missing or unreadable file must not stop the report
                ax.text(0.5, 0.5, "missing", ha="center", va="center")
            same = result.labels[item_row] == result.labels[query]
            colour = "black" if col == 0 else ("#2ca02c" if same else "#d62728")
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3 if col else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(
                ("query: " if col == 0 else "") + str(result.labels[item_row]),
                fontsize=8,
                color=colour,
            )
    fig.suptitle("Sample queries and their 5 results (green: same label, red: other)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
