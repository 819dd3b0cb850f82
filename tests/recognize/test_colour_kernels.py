"""The compiled pixel loops of colour naming give what their numpy formulations give."""

from __future__ import annotations

import numpy as np

from stylefinder.recognize import _colour_kernels as kernels
from stylefinder.recognize.colours import _lookup_tables


def numpy_distance(lab: np.ndarray, other: np.ndarray) -> np.ndarray:
    diff = np.asarray(lab - other, dtype=np.float32)
    return np.sqrt(np.einsum("...i,...i->...", diff, diff))


def test_distance_steps_and_box_mean_match_numpy() -> None:
    rng = np.random.default_rng(3)
    for shape in ((1, 1, 3), (1, 7, 3), (9, 1, 3), (23, 31, 3), (40, 17, 2)):
        lab = rng.normal(50, 30, shape)
        centre = rng.normal(50, 30, shape[-1])
        flat = lab.reshape(-1, shape[-1])
        assert np.array_equal(kernels.distance(flat, centre), numpy_distance(flat, centre))

        steps = np.zeros(shape[:2], np.float32)
        dy, dx = numpy_distance(lab[1:], lab[:-1]), numpy_distance(lab[:, 1:], lab[:, :-1])
        steps[1:] = np.maximum(steps[1:], dy)
        steps[:-1] = np.maximum(steps[:-1], dy)
        steps[:, 1:] = np.maximum(steps[:, 1:], dx)
        steps[:, :-1] = np.maximum(steps[:, :-1], dx)
        assert np.array_equal(kernels.steps(lab), steps)

        padded = np.pad(lab, ((1, 1), (1, 1), (0, 0)), mode="edge")
        rows = padded[:-2] + padded[1:-1] + padded[2:]
        box = (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 9
        assert np.array_equal(kernels.box3(lab), box)


def test_lookup_reads_the_64_level_tables() -> None:
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (13, 21, 3), dtype=np.uint8)
    lab_table, name_table = _lookup_tables()
    q = rgb.astype(np.uint32) >> 2
    index = (q[..., 0] << 12) | (q[..., 1] << 6) | q[..., 2]
    lab, names = kernels.lookup(rgb, lab_table, name_table)
    assert np.array_equal(lab, lab_table[index])
    assert np.array_equal(names, name_table[index])


def test_continuity_bins_positions_as_numpy_histogram_does() -> None:
    edges = np.linspace(-0.1, 1.1, 13)
    rng = np.random.default_rng(5)
    a, b = np.zeros(3), np.array([10.0, 0.0, 0.0])
    for trial in range(60):
        # positions along a -> b, some exactly on bin edges and some outside the range
        t = rng.uniform(-0.3, 1.3, int(rng.integers(5, 400)))
        t[: len(t) // 4] = rng.choice(edges, len(t) // 4)
        lab = np.outer(t, b - a) + a
        labels = rng.integers(0, 2, len(t))
        axis = b - a
        position = (lab - a) @ axis / float(axis @ axis)
        hist = np.histogram(position, bins=12, range=(-0.1, 1.1))[0]
        share = 0.2 + 0.1 * (trial % 5)
        expected = hist[3:9].min() >= share * min(hist[:3].max(), hist[9:].max())
        assert kernels.continuous(lab, labels, 0, 1, a, b, share, edges) == expected


def _merge(lab, labels, light=None, tint=1.0):
    edges = np.linspace(-0.1, 1.1, 13)
    light = np.ones((len(lab), 3)) if light is None else light
    return kernels.merge_shading(lab, labels, 16.0, 45.0, 0.2, edges, light, tint)


def test_merging_joins_a_shading_gradient_and_keeps_two_colours_apart() -> None:
    dark, light = np.array([30.0, 40.0, 20.0]), np.array([70.0, 40.0, 20.0])
    gradient = np.linspace(dark, light, 200)  # one colour shaded from dark to light
    labels = (np.arange(200) >= 100).astype(np.int64)  # split in the middle by name
    assert set(_merge(gradient, labels)) == {0}
    two = np.concatenate([np.repeat(dark[None], 100, 0), np.repeat(light[None], 100, 0)])
    assert np.array_equal(_merge(two, labels), labels)
    near = np.concatenate(
        [np.repeat(dark[None], 100, 0), np.repeat(dark[None] + 8, 100, 0)]
    )  # 13.9 apart
    assert set(_merge(near, labels)) == {0}


def test_a_gradient_between_two_tints_is_a_blend_of_two_colours_not_shading() -> None:
    dark, light = np.array([30.0, 40.0, 20.0]), np.array([70.0, 40.0, 20.0])
    gradient = np.linspace(dark, light, 200)
    labels = (np.arange(200) >= 100).astype(np.int64)
    blue, white = np.array([0.14, 0.27, 0.43]), np.array([0.6, 0.6, 0.6])
    blend = np.linspace(blue, white, 200)  # linear light along the way: the tint changes
    assert np.array_equal(_merge(gradient, labels, blend, tint=0.05), labels)
    shaded = np.linspace(0.3, 1.0, 200)[:, None] * blue  # the same tint, darker and lighter
    assert set(_merge(gradient, labels, shaded, tint=0.05)) == {0}


def test_outlines_follow_a_line_and_ignore_weak_noise() -> None:
    gradient = np.zeros((20, 20), np.float32)
    gradient[10, 2:18] = 1.5  # a weak line ...
    gradient[10, 5] = 3.0  # ... with one strong pixel
    gradient[3, 3] = 1.5  # a weak speck, joined to nothing strong
    edge = kernels.outlines(gradient, 1.0, 2.0)
    assert edge[10, 2:18].all() and edge[9, 2:18].all() and edge[11, 2:18].all()
    assert not edge[3, 3] and edge.sum() == 16 * 3 + 2


def test_a_thin_line_is_its_own_colour_and_a_step_between_two_colours_a_blend() -> None:
    lab = np.zeros((9, 9, 3))
    lab[:, 4] = [60.0, 0.0, 0.0]  # a line one pixel thin
    everywhere = np.ones((9, 9), bool)
    assert not kernels.blended(lab, 25.0, everywhere)[1:-1, 4].any()
    lab[:, 5:] = [100.0, 0.0, 0.0]  # now a ramp: 0, 60, 100
    assert kernels.blended(lab, 25.0, everywhere)[1:-1, 4].all()


def numpy_dilate(mask: np.ndarray) -> np.ndarray:
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def numpy_erode(mask: np.ndarray, radius: int) -> np.ndarray:
    for _ in range(radius):
        inner = mask.copy()
        inner[1:] &= mask[:-1]
        inner[:-1] &= mask[1:]
        inner[:, 1:] &= mask[:, :-1]
        inner[:, :-1] &= mask[:, 1:]
        inner[0], inner[-1], inner[:, 0], inner[:, -1] = False, False, False, False
        mask = inner
    return mask


def test_mask_steps_percentile_and_means_match_numpy() -> None:
    rng = np.random.default_rng(6)
    for shape in ((1, 1), (2, 9), (3, 3), (17, 29), (40, 33)):
        mask = rng.random(shape) < 0.7
        assert np.array_equal(kernels.dilate(mask), numpy_dilate(mask))
        for radius in (1, 2, 3):
            assert np.array_equal(kernels.erode(mask, radius), numpy_erode(mask, radius))
    for size in [1, 2, 3, 4, 5, 8, *rng.integers(6, 3000, 200)]:
        values = (rng.random(size) * rng.uniform(0.1, 40)).astype(np.float32)
        assert kernels.percentile(values, 75.0) == np.percentile(values, 75)
        points = rng.normal(50, 30, (size, 3))
        chosen = rng.random(size) < 0.6
        mean, count = kernels.masked_mean(points, chosen)
        assert count == chosen.sum()
        if count:  # numpy sums rows in order, not pairwise, for mean(0)
            assert np.array_equal(mean, points[chosen].mean(0))


def numpy_border_colour(border: np.ndarray) -> tuple[np.ndarray | None, float]:
    """What colours.py computed with numpy before the whole pass was compiled."""
    bins = np.floor(border / 8.0).astype(np.int64)
    keys = (bins[:, 0] + 4) * 10_000 + (bins[:, 1] + 40) * 100 + (bins[:, 2] + 40)
    values, counts = np.unique(keys, return_counts=True)
    centre = border[keys == values[np.argmax(counts)]].mean(0)
    for _ in range(2):
        near = numpy_distance(border, centre) < 10.0
        if not near.any():
            return None, 0.0
        centre = border[near].mean(0)
    distance = numpy_distance(border, centre)
    inliers = distance < 10.0
    if inliers.mean() < 0.4:
        return None, 0.0
    return centre, float(np.percentile(distance[inliers], 75))


def test_border_colour_matches_its_numpy_formulation() -> None:
    rng = np.random.default_rng(7)
    found_some = missed_some = False
    for _ in range(200):
        size = int(rng.integers(4, 800))
        plain = rng.normal(0, rng.uniform(0.5, 6), (size, 3)) + rng.uniform(0, 100, 3)
        scenery = rng.uniform(-60, 100, (size, 3))
        border = np.where(rng.random((size, 1)) < rng.uniform(0, 1), plain, scenery)
        expected, spread = numpy_border_colour(border)
        centre, found_spread, found = kernels.border_colour(border, 10.0, 0.4)
        assert found == (expected is not None)
        if found:
            assert np.array_equal(centre, expected) and float(found_spread) == spread
        found_some, missed_some = found_some or found, missed_some or not found
    assert found_some and missed_some


_WARM_SCRIPT = """
import sys
from PIL import Image
from stylefinder.recognize import _colour_kernels as kernels
from stylefinder.recognize.colours import dominant_colours, warm_up

def compiled():
    return {name: len(getattr(kernels, name).signatures) for name in dir(kernels)
            if hasattr(getattr(kernels, name), "signatures")}

warm_up()
after_warm_up = compiled()
for path in sys.argv[1:]:
    dominant_colours(Image.open(path))
print(sum(after_warm_up.values()))
print([name for name, count in compiled().items() if count != after_warm_up[name]])
"""


def test_warm_up_compiles_every_kernel_that_photos_use(demo) -> None:
    """In a fresh process, `warm_up()` leaves nothing for real photos to compile (kernels
    called only from other kernels are compiled inside them and list no signature)."""
    import subprocess
    import sys

    photos = sorted((demo.root / "images").glob("*.png"))[::40] + [q for q, _ in demo.queries]
    done = subprocess.run(
        [sys.executable, "-c", _WARM_SCRIPT, *map(str, photos)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    compiled_by_warm_up, compiled_later = done.stdout.strip().splitlines()[-2:]
    assert int(compiled_by_warm_up) > 0 and compiled_later == "[]"
