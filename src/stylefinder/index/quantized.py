"""int8 codes of every row: the first search stage when principal components cannot rank.

Where the spectrum is flat (e.g. isotropic vectors) 128 principal components carry too little
of each vector to pick candidates, but the full vector quantized to one byte per dimension does:
a 100k x 1280 index scans as 128 MB instead of 512 MB, and the candidates it picks are then
rescored exactly. Each dimension j has a scale s_j (its largest magnitude / 127), so
`vector[j] ~= codes[j] * s_j` and `query @ vector ~= (query * s) @ codes`.

Example:
    >>> import numpy as np
    >>> rows = np.array([[0.6, 0.8], [1.0, 0.0]], np.float32)
    >>> scale = fit_scale(rows)
    >>> codes = quantize(rows, scale)
    >>> codes.tolist()
    [[76, 127], [127, 0]]
    >>> int(np.argmin(negated_scores(codes, np.array([0.0, 1.0], np.float32) * scale)))
    0
"""

from __future__ import annotations

import threading

import numpy as np

_BLOCK_ROWS = 65_536  # rows quantized per step while streaming the matrix


def fit_scale(vectors: np.ndarray) -> np.ndarray:
    """Per-dimension scales (D,): each dimension's largest magnitude over the rows / 127."""
    peak = np.zeros(vectors.shape[1], np.float32)
    for start in range(0, len(vectors), _BLOCK_ROWS):
        block = np.abs(np.asarray(vectors[start : start + _BLOCK_ROWS], np.float32))
        peak = np.maximum(peak, block.max(axis=0))
    return np.maximum(peak, 1e-12) / 127


def quantize(
    vectors: np.ndarray,
    scale: np.ndarray,
    *,
    out: np.ndarray | None = None,
    start: int = 0,
) -> np.ndarray:
    """int8 codes of `vectors` (n, D) written to rows `start:start+n` of `out` (N, D).

    Values beyond a scale fitted on other rows are clipped to +-127: candidates are rescored
    exactly, so a clipped row only ranks a little lower in the first stage.
    """
    if out is None:
        out = np.empty(vectors.shape, np.int8)
    for offset in range(0, len(vectors), _BLOCK_ROWS):
        block = np.asarray(vectors[offset : offset + _BLOCK_ROWS], np.float32) / scale
        rows = slice(start + offset, start + offset + len(block))
        out[rows] = np.clip(np.rint(block), -127, 127).astype(np.int8)
    return out


def negated_scores(codes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`-(codes @ weights)` as float32 (N,), for int8 `codes` (N, D) and `weights` (D,).

    A compiled kernel (numba, all cores) converts and accumulates in float32 without
    materializing a float copy of the codes; without numba, numpy does it block by block. One
    scan runs at a time: each already uses every core, and numba's fallback thread pool
    (platforms without OpenMP) must not be entered by two threads at once.
    """
    weights = np.ascontiguousarray(weights, np.float32)
    out = np.empty(len(codes), np.float32)
    kernel = _kernel()
    if kernel is not None:
        with _scan_lock:
            kernel(codes, weights, out)
        return out
    for start in range(0, len(codes), _BLOCK_ROWS):
        block = np.asarray(codes[start : start + _BLOCK_ROWS], np.float32)
        out[start : start + len(block)] = -(block @ weights)
    return out


_compiled: list = []
_scan_lock = threading.Lock()


def _kernel():
    """The compiled scan (numba compiles it, or loads it from its cache, on first use); None
    without numba."""
    if not _compiled:
        try:
            from stylefinder.index._int8_scan import scan
        except ImportError:  # pragma: no cover - numba is a dependency; kept for odd platforms
            scan = None
        _compiled.append(scan)
    return _compiled[0]
