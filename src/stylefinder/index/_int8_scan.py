"""The compiled int8 scan of `stylefinder.index.quantized`, in its own module because importing
numba takes a moment: only indexes that use int8 codes pay it."""

import numpy as np
from numba import njit, prange


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def scan(codes, weights, out):  # pragma: no cover - compiled by numba, not traced
    """out[i] = -(codes[i] @ weights), rows spread over all cores, accumulated in float32."""
    rows, width = codes.shape
    for i in prange(rows):
        total = np.float32(0)
        for j in range(width):
            total += np.float32(codes[i, j]) * weights[j]
        out[i] = -total
