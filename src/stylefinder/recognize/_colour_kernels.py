"""Compiled pixel loops of `stylefinder.recognize.colours`.

Each kernel does in one pass what took the numpy version several temporary arrays, and releases
the GIL, so the indexing workers that name colours while they decode run side by side. The
arithmetic (float32 distances from float64 differences, float64 box sums) follows the numpy
version step by step, so results are the same.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def distance(points, centre, first=0):  # pragma: no cover - compiled by numba, not traced
    """CIELAB distance of each row of `points` (N, C) to `centre` (C,), over channels `first`..,
    in float32."""
    rows, width = points.shape
    out = np.empty(rows, np.float32)
    for i in range(rows):
        total = np.float32(0)
        for k in range(first, width):
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
def blended(lab, edge_de, where):  # pragma: no cover - compiled by numba, not traced
    """Per pixel of `lab` (H, W, C) in `where` (H, W), whether it straddles a colour edge: along
    a row or a column it differs from a neighbour by more than `edge_de` and lies between its
    two neighbours there (a mix of the colours on either side). A pixel of a line a pixel or
    so thin differs from both sides alike: it is the line's own colour, not a blend."""
    height, width, depth = lab.shape
    out = np.zeros((height, width), np.bool_)
    limit = np.float32(edge_de) * np.float32(edge_de)
    for i in range(height):
        for j in range(width):
            if not where[i, j]:
                continue
            for di, dj in ((1, 0), (0, 1)):
                y0, x0, y1, x1 = i - di, j - dj, i + di, j + dj
                inside = y0 >= 0 and x0 >= 0 and y1 < height and x1 < width
                before = np.float32(0)
                after = np.float32(0)
                turn = np.float32(0)
                for k in range(depth):
                    a = np.float32(lab[i, j, k] - lab[max(y0, 0), max(x0, 0), k])
                    b = np.float32(lab[min(y1, height - 1), min(x1, width - 1), k] - lab[i, j, k])
                    before += a * a
                    after += b * b
                    turn += a * b
                # at the image's edge, where one side is missing: a blend
                if (before > limit or after > limit) and (not inside or turn > 0):
                    out[i, j] = True
    return out


@njit(cache=True, nogil=True)
def sharp(lab, where, limit):  # pragma: no cover - compiled by numba, not traced
    """Which pixels of `where` (H, W) differ from a 4-neighbour in `lab` (H, W, C) by more than
    `limit` (as `steps(lab) > limit` there)."""
    height, width, depth = lab.shape
    out = np.zeros((height, width), np.bool_)
    bound = np.float32(limit)
    for i in range(height):
        for j in range(width):
            if not where[i, j]:
                continue
            for y, x in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
                if 0 <= y < height and 0 <= x < width:
                    total = np.float32(0)
                    for k in range(depth):
                        d = np.float32(lab[y, x, k] - lab[i, j, k])
                        total += d * d
                    if np.sqrt(total) > bound:
                        out[i, j] = True
                        break
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
def outlines(gradient, weak, strong):  # pragma: no cover - compiled by numba, not traced
    """Edge pixels of `gradient` (H, W) by hysteresis (as Canny's): pixels above `strong`, and
    those above `weak` 8-connected to them, grown by one pixel (4-neighbourhood) so that a
    4-connected flood cannot slip through a diagonal step of the line."""
    height, width = gradient.shape
    edge = np.zeros((height, width), np.bool_)
    stack = np.empty(height * width, np.int64)
    top = 0
    for i in range(height):
        for j in range(width):
            if gradient[i, j] > strong:
                edge[i, j] = True
                stack[top] = i * width + j
                top += 1
    while top:
        top -= 1
        i, j = divmod(stack[top], width)
        for y in range(max(i - 1, 0), min(i + 2, height)):
            for x in range(max(j - 1, 0), min(j + 2, width)):
                if not edge[y, x] and gradient[y, x] > weak:
                    edge[y, x] = True
                    stack[top] = y * width + x
                    top += 1
    return dilate(edge)


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
def merge_shading(lab, labels, near, far, share, edges, light, tint):  # pragma: no cover
    """Merge pixel groups (`labels` 0..G-1 of the pixels `lab` (N, 3)) that differ only by
    shading, one pair at a time, closest first: pairs whose mean colours are nearer than `near`,
    or nearer than `far` with the way between them filled (see `continuous`) and the same tint:
    shading scales a colour's linear light (`light`, (N, 3)) and keeps its chromaticity, so
    groups whose summed light has chromaticities (r, g over r + g + b) further apart than
    `tint` are two colours (a print and the cloth, blended along their edges). Returns the
    merged labels; a merged group takes the label of the lower one."""
    labels = labels.copy()
    groups = labels.max() + 1
    while True:
        counts = np.zeros(groups, np.int64)
        sums = np.zeros((groups, 3), np.float64)
        light_sums = np.zeros((groups, 3), np.float64)
        for p in range(len(labels)):
            counts[labels[p]] += 1
            for k in range(3):
                sums[labels[p], k] += lab[p, k]
                light_sums[labels[p], k] += light[p, k]
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
            if best >= near and _tint_gap(light_sums[a], light_sums[b]) > tint:
                continue
            if best < near or continuous(lab, labels, a, b, centres[bi], centres[bj], share, edges):
                for p in range(len(labels)):
                    if labels[p] == b:
                        labels[p] = a
                merged = True
        if not merged:
            return labels


@njit(cache=True, nogil=True)
def _tint_gap(first, second):  # pragma: no cover - compiled by numba, not traced
    """Distance between the chromaticities (r, g over r + g + b) of two linear colours."""
    total_a = max(first[0] + first[1] + first[2], 1e-9)
    total_b = max(second[0] + second[1] + second[2], 1e-9)
    dr = first[0] / total_a - second[0] / total_b
    dg = first[1] / total_a - second[1] / total_b
    return np.sqrt(dr * dr + dg * dg)


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


@njit(cache=True, nogil=True)
def dilate(mask):  # pragma: no cover - compiled by numba, not traced
    """`mask` (H, W) grown by one pixel (4-neighbourhood)."""
    height, width = mask.shape
    out = mask.copy()
    for i in range(height):
        for j in range(width):
            if mask[i, j]:
                if i > 0:
                    out[i - 1, j] = True
                if i < height - 1:
                    out[i + 1, j] = True
                if j > 0:
                    out[i, j - 1] = True
                if j < width - 1:
                    out[i, j + 1] = True
    return out


@njit(cache=True, nogil=True)
def erode(mask, radius):  # pragma: no cover - compiled by numba, not traced
    """`mask` (H, W) shrunk by `radius` pixels (4-neighbourhood steps; outside counts as off)."""
    height, width = mask.shape
    current = mask.copy()
    for _ in range(radius):
        inner = np.zeros((height, width), np.bool_)
        for i in range(1, height - 1):
            for j in range(1, width - 1):
                inner[i, j] = (
                    current[i, j]
                    and current[i - 1, j]
                    and current[i + 1, j]
                    and current[i, j - 1]
                    and current[i, j + 1]
                )
        current = inner
    return current


@njit(cache=True, nogil=True)
def percentile(values, q):  # pragma: no cover - compiled by numba, not traced
    """np.percentile(values, q) of a non-empty float32 array (linear method, float32 steps)."""
    ordered = np.sort(values)
    position = (len(ordered) - 1) * (q / 100)
    low = int(np.floor(position))
    high = min(low + 1, len(ordered) - 1)
    gamma = np.float32(position - low)
    a, b = ordered[low], ordered[high]
    if gamma >= 0.5:
        return np.float32(b - np.float32(b - a) * np.float32(np.float32(1) - gamma))
    return np.float32(a + np.float32(b - a) * gamma)


@njit(cache=True, nogil=True)
def masked_mean(values, mask):  # pragma: no cover - compiled by numba, not traced
    """Mean of the rows of `values` (N, C) where `mask`, summed in order (as numpy's mean(0));
    and how many rows that was."""
    total = np.zeros(values.shape[1], np.float64)
    count = 0
    for p in range(len(values)):
        if mask[p]:
            count += 1
            for k in range(values.shape[1]):
                total[k] += values[p, k]
    return total / max(count, 1), count


@njit(cache=True, nogil=True)
def border_colour(border, plain_de, min_share):  # pragma: no cover - compiled
    """The main colour of border pixels `border` (N, 3) and the 75th percentile of the distances
    of the pixels within `plain_de` of it; found is False when under `min_share` of the border
    is that near (no plain backdrop)."""
    keys = np.empty(len(border), np.int64)
    for p in range(len(border)):
        keys[p] = (
            (int(np.floor(border[p, 0] / 8.0)) + 4) * 10_000
            + (int(np.floor(border[p, 1] / 8.0)) + 40) * 100
            + (int(np.floor(border[p, 2] / 8.0)) + 40)
        )
    ordered = np.sort(keys)
    mode, best, run = ordered[0], 0, 0
    for p in range(len(ordered)):  # the commonest key, the smallest of equals
        run = run + 1 if p > 0 and ordered[p] == ordered[p - 1] else 1
        if run > best:
            mode, best = ordered[p], run
    centre = masked_mean(border, keys == mode)[0]
    for _ in range(2):  # refine on the pixels near it
        centre, near = masked_mean(border, distance(border, centre) < plain_de)
        if near == 0:
            return centre, np.float32(0), False
    gaps = distance(border, centre)
    inliers = gaps < plain_de
    if inliers.sum() / len(border) < min_share:
        return centre, np.float32(0), False
    return centre, percentile(gaps[inliers], 75.0), True


@njit(cache=True, nogil=True)
def plane_distance(lab, centre, first):  # pragma: no cover - compiled by numba, not traced
    """`distance` per pixel of `lab` (H, W, C), C-contiguous: (H, W) float32."""
    height, width, depth = lab.shape
    return distance(lab.reshape(height * width, depth), centre, first).reshape(height, width)


@njit(cache=True, nogil=True)
def cast_shadow(
    lab, blurred, gradient, edge, strong, backdrop, background, depth, tint, step
):  # pragma: no cover
    """The soft drop shadow next to `background`, from `lab`, its `box3` mean `blurred` and that
    one's `steps` `gradient`, not across outlines: `edge` pixels above `strong` or sharp in
    `lab` (a shadow's own soft ramp may pass for a weak outline); see `colours._regions`."""
    lightness = lab[:, :, 0]
    top, bottom = backdrop[0] + 1, backdrop[0] - depth
    shaded = (lightness < top) & (lightness > bottom)
    shaded &= plane_distance(lab, backdrop, 1) < 2 * tint  # single pixels: noisy
    if not (shaded & ~background & dilate(background)).any():
        return np.zeros_like(background)
    soft = (blurred[:, :, 0] < top) & (blurred[:, :, 0] > bottom)
    soft &= (plane_distance(blurred, backdrop, 1) < tint) & (gradient < step)
    wall = dilate(gradient > strong) | sharp(lab, edge, step)
    reached = flood(background | (erode(soft, 1) & ~wall), background)
    cast = dilate(reached & ~background) & soft
    for _ in range(2):  # the shadow's darkest rim, where it meets the item's outline
        cast |= dilate(cast) & shaded
    return cast


@njit(cache=True, nogil=True)
def regions(
    lab, rgb, opaque, radius, plain_de, min_share, shadow, edge_de, outline
):  # pragma: no cover
    """The garment pixels of an image, the backdrop's mean RGB (NaN without a plain backdrop)
    and the garment pixels away from outlines and colour edges; see `colours._regions`.
    `shadow` holds (SHADOW_DEPTH, SHADOW_TINT, SHADOW_STEP), `outline` (OUTLINE_WEAK,
    OUTLINE_STRONG, OUTLINE_MIN)."""
    height, width = opaque.shape
    garment, backdrop = opaque, np.full(3, np.nan)
    transparent = opaque.size - opaque.sum()
    if transparent == 0 or transparent / opaque.size <= 0.01:  # else a cut-out: transparency
        ring = 2 if min(height, width) >= 16 else 1
        border = np.zeros((height, width), np.bool_)
        border[:ring] = True
        border[height - ring :] = True
        border[:, :ring] = True
        border[:, width - ring :] = True
        points = np.empty((border.sum(), 3), np.float64)
        at = 0
        for i in range(height):
            for j in range(width):
                if border[i, j]:
                    points[at] = lab[i, j]
                    at += 1
        centre, spread, found = border_colour(points, plain_de, min_share)
        if found:  # else no plain backdrop (a photo with scenery): every pixel counts
            # a noisy backdrop (grain, JPEG) widens the threshold a little, within reason;
            # compared in float32, as numpy compares float32 distances with a Python float
            limit = np.float32(min(max(3.0 * np.float64(spread), plain_de), 1.6 * plain_de))
            similar = plane_distance(lab, centre, 0) < limit
            # the flood stops at outlines: lines where the smoothed colour changes much faster
            # than the backdrop's noise does (an item of the backdrop's own colour stays apart)
            blurred = box3(lab)
            gradient = steps(blurred)
            noise = np.float64(np.median(gradient.ravel()[border.ravel()]))
            weak = max(outline[0] * noise, outline[2])
            strong = max(outline[1] * noise, 2 * outline[2])
            edge = outlines(gradient, weak, strong)
            walled = flood(similar & ~edge, border)  # the flood stopped at outlines ...
            background = flood(similar, border)  # ... and not
            for _ in range(2):  # back over the backdrop's side of the outline
                walled |= dilate(walled) & similar
            # what only an outline kept from the flood is an item of the backdrop's colour where
            # it is wide, and backdrop squeezed between outlines (between two legs) where not
            kept = background & ~walled
            if kept.sum() >= (2 * radius + 1) ** 2:  # else nothing in it is wide
                background = walled | (kept & ~flood(kept, erode(kept, radius)))
            # backdrop-coloured areas inside the item: gaps (a bag handle) when they are wide and
            # smaller than the rest of the item; otherwise the item has the backdrop's colour (a
            # white shirt with an outline on white) and they count, as do small specks (a print)
            enclosed = similar & ~background
            gaps = flood(enclosed, erode(enclosed, radius))
            if gaps.sum() < (opaque & ~similar).sum():
                background |= gaps
            cast = cast_shadow(
                lab,
                blurred,
                gradient,
                edge,
                strong,
                centre,
                background,
                shadow[0],
                shadow[1],
                shadow[2],
            )
            candidate = opaque & ~(background | cast)
            if candidate.sum() >= max(8.0, 0.005 * candidate.size):  # else all one colour
                garment = candidate
                backdrop = masked_mean(rgb.reshape(-1, 3), (border & similar).ravel())[0]
    inner = erode(garment, 1)
    if inner.sum() < 0.5 * garment.sum():
        inner = garment  # thin item or tiny image: keep the outline
    smooth = inner & ~blended(lab, edge_de, inner)
    return garment, backdrop, smooth if smooth.sum() >= 0.5 * inner.sum() else inner


@njit(cache=True, nogil=True)
def colour_groups(
    lab, rgb, names, counted, near, far, share, edges, linear, tint
):  # pragma: no cover
    """The `counted` pixels grouped by palette name and merged where they differ only by
    shading (`merge_shading`): per group, in label order, its pixel count, mean CIELAB and RGB
    sum; and per counted pixel (in row-major order) the position of its group among those.
    `linear` is the 256-level table of sRGB to linear light, `tint` as in `merge_shading`."""
    size = counted.sum()
    points = np.empty((size, 3), np.float64)
    colours = np.empty((size, 3), np.float64)
    height, width = counted.shape
    seen = np.zeros(256, np.bool_)
    for i in range(height):
        for j in range(width):
            if counted[i, j]:
                seen[names[i, j]] = True
    rank = np.cumsum(seen) - 1  # labels number the names present, in name order
    groups = seen.sum()
    labels = np.empty(size, np.int64)
    at = 0
    for i in range(height):
        for j in range(width):
            if counted[i, j]:
                points[at] = lab[i, j]
                for k in range(3):
                    colours[at, k] = rgb[i, j, k]
                labels[at] = rank[names[i, j]]
                at += 1
    if size:
        light = np.empty((size, 3), np.float64)
        for p in range(size):
            for k in range(3):
                light[p, k] = linear[int(colours[p, k])]
        labels = merge_shading(points, labels, near, far, share, edges, light, tint)
    counts = np.zeros(groups, np.int64)
    means = np.zeros((groups, 3), np.float64)
    sums = np.zeros((groups, 3), np.float64)
    for p in range(size):
        counts[labels[p]] += 1
        for k in range(3):
            means[labels[p], k] += points[p, k]
            sums[labels[p], k] += colours[p, k]
    present = np.flatnonzero(counts)
    for g in present:
        means[g] /= counts[g]
    position = np.full(groups, -1, np.int64)
    for at in range(len(present)):
        position[present[at]] = at
    members = np.empty(size, np.int64)  # per counted pixel (row-major), its group's position
    for p in range(size):
        members[p] = position[labels[p]]
    return counts[present], means[present], sums[present], members
