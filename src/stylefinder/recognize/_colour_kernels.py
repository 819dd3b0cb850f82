"""Compiled pixel loops of `stylefinder.recognize.colours`.

Each kernel does in one pass what took the numpy version several temporary arrays, and releases
the GIL, so the indexing workers that name colours while they decode run side by side. The
arithmetic (float32 distances from float64 differences, float64 box sums) follows the numpy
version step by step, so results are the same.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def distance(points, centre):  # pragma: no cover - compiled by numba, not traced
    """CIELAB distance of each row of `points` (N, C) to `centre` (C,), in float32."""
    rows, width = points.shape
    out = np.empty(rows, np.float32)
    for i in range(rows):
        total = np.float32(0)
        for k in range(width):
            d = np.float32(points[i, k] - centre[k])
            total += d * d
        out[i] = np.sqrt(total)
    return out


@njit(cache=True, nogil=True)
def steps(lab):  # pragma: no cover - compiled by numba, not traced
    """Per pixel of `lab` (H, W, C), the largest distance to one of its four neighbours."""
    height, width, depth = lab.shape
    out = np.zeros((height, width), np.float32)
    for i in range(height):
        for j in range(width):
            for di, dj in ((1, 0), (0, 1)):
                y, x = i + di, j + dj
                if y >= height or x >= width:
                    continue
                total = np.float32(0)
                for k in range(depth):
                    d = np.float32(lab[y, x, k] - lab[i, j, k])
                    total += d * d
                step = np.sqrt(total)
                out[i, j] = max(out[i, j], step)
                out[y, x] = max(out[y, x], step)
    return out


@njit(cache=True, nogil=True)
def box3(values):  # pragma: no cover - compiled by numba, not traced
    """3x3 box mean of `values` (H, W, C) over the first two axes, with edges repeated."""
    height, width, depth = values.shape
    rows = np.empty((height, width, depth), np.float64)
    for i in range(height):
        up, down = max(i - 1, 0), min(i + 1, height - 1)
        for j in range(width):
            for k in range(depth):
                rows[i, j, k] = values[up, j, k] + values[i, j, k] + values[down, j, k]
    out = np.empty((height, width, depth), np.float64)
    for i in range(height):
        for j in range(width):
            left, right = max(j - 1, 0), min(j + 1, width - 1)
            for k in range(depth):
                out[i, j, k] = (rows[i, left, k] + rows[i, j, k] + rows[i, right, k]) / 9
    return out


@njit(cache=True, nogil=True)
def flood(candidate, seeds):  # pragma: no cover - compiled by numba, not traced
    """The 4-connected part of `candidate` (H, W) reachable from `seeds`, by a stack walk."""
    height, width = candidate.shape
    reached = np.zeros((height, width), np.bool_)
    stack = np.empty(height * width, np.int64)
    top = 0
    for i in range(height):
        for j in range(width):
            if candidate[i, j] and seeds[i, j]:
                reached[i, j] = True
                stack[top] = i * width + j
                top += 1
    while top:
        top -= 1
        i, j = divmod(stack[top], width)
        for y, x in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
            if 0 <= y < height and 0 <= x < width and candidate[y, x] and not reached[y, x]:
                reached[y, x] = True
                stack[top] = y * width + x
                top += 1
    return reached


@njit(cache=True, nogil=True)
def lookup(rgb, lab_table, name_table):  # pragma: no cover - compiled by numba, not traced
    """CIELAB (H, W, 3) and palette-name indices (H, W) of uint8 pixels (H, W, 3), from tables
    over a 64-level-per-channel grid."""
    height, width, _ = rgb.shape
    lab = np.empty((height, width, 3), np.float64)
    names = np.empty((height, width), name_table.dtype)
    for i in range(height):
        for j in range(width):
            at = (rgb[i, j, 0] >> 2) * 4096 + (rgb[i, j, 1] >> 2) * 64 + (rgb[i, j, 2] >> 2)
            for k in range(3):
                lab[i, j, k] = lab_table[at, k]
            names[i, j] = name_table[at]
    return lab, names


@njit(cache=True, nogil=True)
def merge_shading(lab, labels, near, far, share, edges):  # pragma: no cover - compiled
    """Merge pixel groups (`labels` 0..G-1 of the pixels `lab` (N, 3)) that differ only by
    shading, one pair at a time, closest first: pairs whose mean colours are nearer than `near`,
    or nearer than `far` with the way between them filled (see `continuous`). Returns the merged
    labels; a merged group takes the label of the lower one."""
    labels = labels.copy()
    groups = labels.max() + 1
    while True:
        counts = np.zeros(groups, np.int64)
        sums = np.zeros((groups, 3), np.float64)
        for p in range(len(labels)):
            counts[labels[p]] += 1
            for k in range(3):
                sums[labels[p], k] += lab[p, k]
        present = np.flatnonzero(counts)
        size = len(present)
        if size < 2:
            return labels
        centres = np.empty((size, 3), np.float64)
        for i in range(size):
            for k in range(3):
                centres[i, k] = sums[present[i], k] / counts[present[i]]
        distance = np.full((size, size), np.inf)  # pairs i < j only
        for i in range(size):
            for j in range(i + 1, size):
                total = 0.0
                for k in range(3):
                    d = centres[i, k] - centres[j, k]
                    total += d * d
                distance[i, j] = np.sqrt(total)
        merged = False
        while not merged:  # the closest pair not yet tried (the first one, on ties)
            best, bi, bj = far, -1, -1
            for i in range(size):
                for j in range(i + 1, size):
                    if distance[i, j] < best:
                        best, bi, bj = distance[i, j], i, j
            if bi < 0:
                break
            distance[bi, bj] = np.inf
            a, b = present[bi], present[bj]
            if best < near or continuous(lab, labels, a, b, centres[bi], centres[bj], share, edges):
                for p in range(len(labels)):
                    if labels[p] == b:
                        labels[p] = a
                merged = True
        if not merged:
            return labels


@njit(cache=True, nogil=True)
def continuous(lab, labels, a, b, centre_a, centre_b, share, edges):  # pragma: no cover
    """Whether the pixels of groups `a` and `b` fill the way between their centres (a shading
    gradient or a fold) rather than form two clusters: positions along the way, binned by
    `edges` (12 bins over -0.1 .. 1.1), have no bin in 0.2 .. 0.8 under `share` of the
    smaller end's peak."""
    axis = centre_b - centre_a
    length = axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]
    bins = len(edges) - 1
    low, high = edges[0], edges[bins]
    hist = np.zeros(bins, np.int64)
    for p in range(len(labels)):
        if labels[p] != a and labels[p] != b:
            continue
        t = 0.0
        for k in range(3):
            t += (lab[p, k] - centre_a[k]) * axis[k]
        t /= length
        if not (low <= t <= high):
            continue
        at = min(int((t - low) / (high - low) * bins), bins - 1)  # as np.histogram bins it
        if t < edges[at]:
            at -= 1
        elif t >= edges[at + 1] and at != bins - 1:
            at += 1
        hist[at] += 1
    valley = hist[3:9].min()
    return valley >= share * min(hist[:3].max(), hist[9:].max())
