"""The vector index kinds by name: build the one settings choose, load the one an entry names.

Example:
    >>> index = build_vector_index(matrix, AnnSettings(kind="hnsw"))  # doctest: +SKIP
    >>> again = load_vector_index(folder, index.save(folder, "ann-3"), matrix)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stylefinder.index.hnsw import HnswIndex
from stylefinder.index.hnsw_build import build_hnsw
from stylefinder.index.vector_index import DEFAULT_ANN, AnnSettings, ExactIndex, VectorIndex


def build_vector_index(
    vectors: np.ndarray,
    settings: AnnSettings = DEFAULT_ANN,
    *,
    progress: bool = False,
) -> VectorIndex:
    """The vector index `settings` choose for `vectors`, built over all its rows.

    Example:
        >>> index = build_vector_index(matrix, AnnSettings(kind="hnsw"))  # doctest: +SKIP
        >>> index.params["search_width"], index.params["recall_at_10"]  # doctest: +SKIP
        (48, 0.985)
    """
    kind = settings.chosen_kind(len(vectors))
    if kind == "exact":
        return ExactIndex(vectors)
    return build_hnsw(vectors, settings, progress=progress)


def load_vector_index(directory: Path, entry: dict[str, Any], vectors: np.ndarray) -> VectorIndex:
    """The index described by `entry` (as `save` returned it), searching `vectors`.

    Example:
        >>> index = load_vector_index(folder, {"kind": "exact"}, matrix)  # doctest: +SKIP
    """
    kind = entry.get("kind", "exact")
    if kind == "exact":
        return ExactIndex.load(directory, entry, vectors)
    if kind == "hnsw":
        return HnswIndex.load(directory, entry, vectors)
    raise ValueError(f"unknown vector index kind {kind!r}")
