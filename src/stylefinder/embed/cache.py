"""Where exported ONNX graphs are kept, and which weights they were exported from.

Graphs are named `<backbone>-<pooling>-<weights fingerprint>[-<head>]-<GRAPH_VERSION>.onnx`
in `graphs_dir()`; `exports.json` beside them maps a weights file (path, size, mtime) and a
pooling to the graph exported from it, so a later run finds the graph without loading torch.

Example:
    >>> graphs_dir().name
    'onnx'
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from stylefinder.io.files import atomic_write
from stylefinder.types import EmbeddingSpace

log = logging.getLogger(__name__)
GRAPH_VERSION = "u8h"  # bump when the exported graph's inputs or outputs change
_EXPORTS_FILE = "exports.json"  # weights id|pooling -> graph file name, weights fingerprint


def cache_dir() -> Path:
    """Where exported ONNX graphs are kept: $STYLEFINDER_CACHE, else ~/.cache/stylefinder."""
    if os.environ.get("STYLEFINDER_CACHE"):
        return Path(os.environ["STYLEFINDER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stylefinder"


def graphs_dir() -> Path:
    """The folder of the exported graphs (and of their int8 versions)."""
    return cache_dir() / "onnx"


def graph_for_space(space: EmbeddingSpace) -> Path | None:
    """The float graph exported for `space`'s backbone, pooling and weights; None when none is.

    Example:
        >>> graph_for_space(EmbeddingSpace("resnet50", "max", "0" * 16, 2048)) is None
        True
    """
    stem = f"{space.backbone}-{space.pooling}-{space.weights_fingerprint}"
    graphs = sorted(graphs_dir().glob(f"{stem}*-{GRAPH_VERSION}.onnx"))
    return graphs[-1] if graphs else None


def text_files(graph: Path) -> tuple[Path, Path]:
    """Where a CLIP-family image graph's text tower is kept: (its ONNX graph, the JSON of its
    tokenizer and settings), beside the image graph.

    Example:
        >>> [p.name for p in text_files(Path("clip-avg-ab12-u8h.onnx"))]
        ['clip-avg-ab12-u8h.text.onnx', 'clip-avg-ab12-u8h.text.json']
    """
    stem = graph.name.removesuffix(".onnx")
    return graph.with_name(f"{stem}.text.onnx"), graph.with_name(f"{stem}.text.json")


def graph_for_weights(weights_id: str | None, pooling: str) -> tuple[Path, str] | None:
    """(graph, weights fingerprint) that `remember_export` recorded for the weights
    `weights_id` (see `BackboneSpec.weights_id`) with `pooling`; None when there is none."""
    if weights_id is None:
        return None
    known = _exports().get(f"{weights_id}|{pooling}")
    if not isinstance(known, dict) or not known.get("fingerprint"):
        return None
    graph = graphs_dir() / str(known.get("graph", ""))
    return (graph, str(known["fingerprint"])) if graph.is_file() else None


def remember_export(weights_id: str | None, pooling: str, graph: Path, fingerprint: str) -> None:
    """Record that the weights `weights_id` with `pooling` export to `graph` (best effort: a
    read-only cache only means later embedders load torch again)."""
    if weights_id is None:
        return
    key = f"{weights_id}|{pooling}"
    entry = {"graph": graph.name, "fingerprint": fingerprint}
    known = _exports()
    if known.get(key) == entry or graph.parent != graphs_dir():
        return
    known[key] = entry
    try:
        text = json.dumps(known, indent=1, sort_keys=True)
        atomic_write(graph.parent / _EXPORTS_FILE, text.encode("utf-8"))
    except OSError as exc:  # NoSpaceError too
        log.info("cannot record the exported graph %s (%s)", graph.name, exc)


def _exports() -> dict:
    """What `remember_export` recorded ({} when nothing, or unreadable)."""
    try:
        known = json.loads((graphs_dir() / _EXPORTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}
