"""Colours as shoppers name them on studio product photos: white balance from the backdrop,
hue before grey, the lit colour of a shaded garment, and issue 23's table of real garments."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from stylefinder.colour_words import FAMILIES, SYNONYMS, colour_terms
from stylefinder.recognize.colours import COLOUR_NAMES, dominant_colours, name_colour, visible_hue
from stylefinder.recognize.recognition import MULTI
from stylefinder.recognize.studio_testset import (
    CONDITIONS,
    TABLE_CASES,
    generate_studio_testset,
    is_accepted,
    render_table_case,
)
from stylefinder.recognize.white_balance import balanced, light_gains, reference_colour

NOT_YET = {"white T-shirt"}  # issue 23: still open


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((43, 58, 74), "navy"),  # dark blue jeans
        ((117, 141, 155), "blue"),  # light-wash denim
        ((170, 187, 216), "blue"),  # a light blue oxford shirt
        ((106, 141, 175), "blue"),
        ((128, 128, 128), "grey"),
        ((140, 135, 128), "grey"),  # a warm grey has no hue a shopper names
        ((75, 75, 78), "grey"),
        ((20, 22, 26), "black"),
    ],
)
def test_a_visible_hue_decides_the_name(rgb, name):
    assert name_colour(rgb) == name


def test_grey_is_only_where_the_hue_is_really_absent():
    greys = np.array([[v, v, v] for v in range(60, 230, 10)])
    assert not visible_hue(greys).any()
    faded_blues = np.array([[117, 141, 155], [114, 139, 156], [43, 58, 74], [170, 187, 216]])
    assert visible_hue(faded_blues).all()


def _garment(colour, backdrop, cast=(1.0, 1.0, 1.0)) -> Image.Image:
    """A shaded garment on a backdrop, both under a light of colour `cast` (linear gains)."""
    image = Image.new("RGB", (160, 200), backdrop)
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 30, 120, 170), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(1))
    linear = (np.asarray(image, np.float64) / 255) ** 2.2 * np.array(cast)
    return Image.fromarray(np.clip(255 * linear ** (1 / 2.2), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("cast", [(1.0, 0.86, 0.68), (0.8, 0.92, 1.0)], ids=["warm", "cool"])
@pytest.mark.parametrize(
    ("colour", "name"),
    [((225, 200, 160), "beige"), ((245, 150, 180), "pink"), ((128, 128, 128), "grey")],
)
def test_the_light_of_a_tinted_scene_is_taken_out_by_the_backdrop(cast, colour, name):
    tinted = _garment(colour, (228, 228, 228), cast)
    assert [c.name for c in dominant_colours(_garment(colour, (228, 228, 228)))] == [name]
    found = dominant_colours(tinted)
    assert [c.name for c in found] == [name]
    unbalanced = dominant_colours(tinted, balance=False)[0].rgb
    assert (
        np.abs(np.array(found[0].rgb) - colour).max() < np.abs(np.array(unbalanced) - colour).max()
    )


def test_white_balance_maps_the_reference_to_grey_and_leaves_colour_backdrops_alone():
    warm_paper = np.array([250.0, 228.0, 196.0])
    gains = light_gains(warm_paper)
    fixed = balanced(warm_paper.astype(np.uint8).reshape(1, 1, 3), gains)[0, 0]
    assert fixed.max() - fixed.min() <= 1
    assert light_gains(np.array([200.0, 200.0, 200.0])) is None
    red = np.array([200.0, 30.0, 30.0])
    assert (
        reference_colour(
            np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3)), red, np.array([45.0, 66.0, 44.0])
        )
        is None
    )


_NOT_YET = pytest.mark.xfail(
    strict=True, reason="issue 23: white on a light-grey backdrop in dim soft light"
)


@pytest.mark.parametrize(
    "number",
    [
        pytest.param(n, id=case.garment, marks=[_NOT_YET] if case.garment in NOT_YET else [])
        for n, case in enumerate(TABLE_CASES)
    ],
)
def test_issue_23s_garments_are_named_as_shoppers_name_them(number):
    case = TABLE_CASES[number]
    image = render_table_case(case, seed=number)
    found = dominant_colours(image)
    assert found[0].name in case.accepted, found
    assert np.abs(np.array(found[0].rgb) - case.rgb).max() <= 4  # rendered as the photo came out


def test_studio_conditions_reach_the_target_where_issue_23_is_done():
    """Per condition, 40 items (seed 5): at least 0.95 (a miss or two) where the benchmark
    (`benchmarks/colour_studio.py`, 100 per condition) measures >= 0.97, and 0.9 where it
    measures 0.96-0.97; prints are still open (0.91 in the benchmark, 0.78 here against
    0.6 before their blends were handed to the print and the cloth)."""
    samples = generate_studio_testset(40, seed=5)
    by: dict[str, list[bool]] = {}
    for sample in samples:
        by.setdefault(sample.condition, []).append(
            is_accepted(sample, [c.name for c in dominant_colours(sample.image)])
        )
    assert set(by) == set(CONDITIONS)
    for condition in ("neutral light", "cool light", "white backdrop", "black on black", "denim"):
        assert np.mean(by[condition]) >= 0.95, (condition, np.mean(by[condition]))
    for condition in ("warm light", "white on white", "folds"):
        assert np.mean(by[condition]) >= 0.9, (condition, np.mean(by[condition]))
    assert np.mean(by["print"]) >= 0.7, np.mean(by["print"])


def test_every_colour_word_stands_for_palette_names():
    known = {*COLOUR_NAMES, MULTI}
    for word, names in {**FAMILIES, **SYNONYMS}.items():
        assert names and names <= known, word
    assert all(colour_terms(name) and name in colour_terms(name) for name in COLOUR_NAMES)
