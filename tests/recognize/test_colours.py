"""Colour naming: known answers on drawn images, odd inputs, and the generated test set."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from stylefinder.errors import BadImageError
from stylefinder.recognize import _colour_kernels as kernels
from stylefinder.recognize.colour_testset import (
    BACKGROUNDS,
    generate_colour_testset,
    is_correct,
)
from stylefinder.recognize.colours import (
    COLOUR_NAMES,
    PALETTE,
    ColourShare,
    colour_names,
    dominant_colours,
    garment_mask,
    name_colour,
)


def on_backdrop(colour, backdrop=(255, 255, 255), size=(160, 200), box=(40, 40, 120, 160)):
    image = Image.new("RGB", size, backdrop)
    image.paste(colour, box)
    return image


def test_palette_has_about_fifteen_names_that_name_themselves() -> None:
    assert 13 <= len(COLOUR_NAMES) <= 17
    for name in ("black", "white", "grey", "beige", "brown", "red", "pink", "orange", "yellow"):
        assert name in COLOUR_NAMES
    for name in ("green", "blue", "navy", "purple"):
        assert name in COLOUR_NAMES
    assert all(name_colour(rgb) == name for name, rgb in PALETTE.items())


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((0, 0, 0), "black"),
        ((255, 255, 255), "white"),
        ((128, 128, 128), "grey"),
        ((245, 222, 179), "beige"),
        ((139, 69, 19), "brown"),
        ((220, 20, 60), "red"),
        ((255, 182, 193), "pink"),
        ((255, 140, 0), "orange"),
        ((255, 215, 0), "yellow"),
        ((34, 139, 34), "green"),
        ((65, 105, 225), "blue"),
        ((0, 0, 128), "navy"),
        ((128, 0, 128), "purple"),
    ],
)
def test_name_colour_known_answers(rgb, name) -> None:
    assert name_colour(rgb) == name


def test_red_square_on_white_is_red_and_the_background_is_ignored() -> None:
    found = dominant_colours(on_backdrop((200, 30, 30)))
    assert [c.name for c in found] == ["red"]
    assert found[0].share == pytest.approx(1.0, abs=0.02)
    assert isinstance(found[0], ColourShare)
    assert np.allclose(found[0].rgb, (200, 30, 30), atol=3)


@pytest.mark.parametrize(
    "backdrop", [(255, 255, 255), (225, 225, 225), (128, 128, 128), (10, 10, 10)]
)
def test_backdrop_shade_does_not_matter(backdrop) -> None:
    assert colour_names(on_backdrop((250, 140, 20), backdrop)) == ["orange"]


def test_two_colour_item_gives_both_colours_with_their_shares() -> None:
    image = on_backdrop((25, 35, 90))
    image.paste((245, 150, 180), (40, 100, 120, 160))  # bottom half pink
    found = dominant_colours(image)
    assert sorted(c.name for c in found) == ["navy", "pink"]
    assert all(c.share == pytest.approx(0.5, abs=0.08) for c in found)


def test_thin_strap_keeps_its_share() -> None:
    image = on_backdrop((245, 150, 180), box=(40, 80, 120, 160))
    for left in (50, 104):  # two 6-pixel straps over 50 pixels: 600 of 7,000 pixels (~9%)
        image.paste((200, 30, 30), (left, 30, left + 6, 80))
    image.paste((200, 30, 30), (40, 80, 120, 96))  # and a band: 28% red in all
    found = {c.name: c.share for c in dominant_colours(image)}
    assert set(found) == {"pink", "red"}
    assert found["red"] == pytest.approx(0.26, abs=0.06)


def test_max_colours_and_min_share() -> None:
    image = on_backdrop((25, 35, 90))
    image.paste((245, 150, 180), (40, 100, 120, 140))
    image.paste((250, 220, 40), (40, 140, 120, 160))
    assert len(dominant_colours(image)) == 3
    assert [c.name for c in dominant_colours(image, max_colours=1)] == ["navy"]
    assert [c.name for c in dominant_colours(image, min_share=0.4)] == ["navy"]
    with pytest.raises(ValueError, match="max_colours"):
        dominant_colours(image, max_colours=0)


def test_greyscale_images_work_and_come_out_achromatic() -> None:
    pixels = np.zeros((28, 28), dtype=np.uint8)  # Fashion-MNIST style: light item on black
    pixels[4:24, 8:20] = 240
    assert colour_names(pixels) == ["white"]
    assert colour_names(Image.fromarray(255 - pixels)) == ["black"]  # 15 on white
    pixels[4:24, 8:20] = 140
    assert colour_names(pixels) == ["grey"]
    assert colour_names(pixels.astype(np.float32) / 255) == ["grey"]
    assert colour_names(pixels[..., None]) == ["grey"]
    dithered = Image.fromarray(pixels).convert("1")  # 1-bit: black and white dots
    assert set(colour_names(dithered)) <= {"black", "white"}
    gradient = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    assert set(colour_names(gradient)) <= {"black", "grey", "white"}


def test_transparent_background_is_background() -> None:
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., :3] = (0, 200, 0)  # green, but fully transparent
    rgba[16:48, 16:48] = (200, 30, 30, 255)
    assert colour_names(rgba) == ["red"]
    assert colour_names(Image.fromarray(rgba, "RGBA")) == ["red"]
    assert garment_mask(rgba).sum() == 32 * 32
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([0, 200, 0, 25, 35, 90] + [0] * 762)
    palette.info["transparency"] = 0
    palette.paste(1, (10, 10, 30, 30))
    assert colour_names(palette) == ["navy"]
    assert dominant_colours(Image.new("RGBA", (8, 8), (9, 9, 9, 0))) == []


def test_photo_without_plain_background_uses_every_pixel() -> None:
    rng = np.random.default_rng(0)
    scene = np.zeros((120, 180, 3))
    scene[:, :60], scene[:, 60:120], scene[:, 120:] = (40, 140, 60), (50, 110, 210), (250, 140, 20)
    scene = np.clip(scene + rng.normal(0, 5, scene.shape), 0, 255).astype(np.uint8)
    found = dominant_colours(scene)
    assert sorted(c.name for c in found) == ["blue", "green", "orange"]
    assert all(c.share == pytest.approx(1 / 3, abs=0.05) for c in found)
    # a close-up of one fabric: all one colour, no garment outline, still named
    assert colour_names(np.full((50, 50, 3), (25, 35, 90), dtype=np.uint8)) == ["navy"]


def test_enclosed_specks_count_but_gaps_are_background() -> None:
    image = on_backdrop((20, 20, 20), size=(128, 128), box=(24, 24, 104, 104))
    image.paste((255, 255, 255), (60, 60, 64, 64))  # a small white print: part of the garment
    assert garment_mask(image).sum() == 80 * 80
    image.paste((255, 255, 255), (44, 44, 84, 84))  # a wide backdrop-coloured gap: a bag handle
    assert garment_mask(image).sum() == 80 * 80 - 40 * 40
    assert colour_names(image) == ["black"]


def test_item_of_the_backdrop_colour_counts_inside_its_outline() -> None:
    image = Image.new("RGB", (200, 200), "white")
    shirt = [(60, 30), (140, 30), (180, 70), (150, 90), (150, 180), (50, 180), (50, 90), (20, 70)]
    ImageDraw.Draw(image).polygon(shirt, fill=(252, 252, 252), outline=(150, 150, 150), width=3)
    assert colour_names(image) == ["white"]


def test_flood_fill_matches_a_breadth_first_search() -> None:
    rng = np.random.default_rng(5)
    for _ in range(30):
        candidate = rng.random((int(rng.integers(1, 30)), int(rng.integers(1, 30)))) < 0.6
        seeds = candidate & (rng.random(candidate.shape) < 0.05)
        expected = np.zeros_like(candidate)
        queue = list(zip(*np.nonzero(seeds), strict=True))
        while queue:
            y, x = queue.pop()
            if expected[y, x]:
                continue
            expected[y, x] = True
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                inside = 0 <= ny < candidate.shape[0] and 0 <= nx < candidate.shape[1]
                if inside and candidate[ny, nx] and not expected[ny, nx]:
                    queue.append((ny, nx))
        assert np.array_equal(kernels.flood(candidate, seeds), expected)


def test_soft_drop_shadow_is_not_a_colour() -> None:
    base = on_backdrop((40, 140, 60), size=(200, 200), box=(50, 40, 130, 150))
    shadow = np.zeros((200, 200), dtype=np.float32)
    shadow[60:170, 60:150] = 1
    kernel = np.ones(15) / 15
    for axis in (0, 1):
        shadow = np.apply_along_axis(lambda row: np.convolve(row, kernel, "same"), axis, shadow)
    pixels = np.asarray(base, dtype=np.float32)
    outside = np.all(pixels == 255, axis=-1)
    pixels[outside] *= 1 - 0.2 * shadow[outside][:, None]
    assert colour_names(pixels.astype(np.uint8)) == ["green"]


def test_bad_inputs_raise_bad_image_error() -> None:
    with pytest.raises(BadImageError, match="shape"):
        dominant_colours(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(BadImageError, match="NaN"):
        dominant_colours(np.full((4, 4), np.nan))
    with pytest.raises(BadImageError):
        dominant_colours("shirt.png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"0\.\.255"):
        name_colour((300, 0, 0))


def test_testset_is_seeded_and_follows_its_rules() -> None:
    first, again = generate_colour_testset(4, seed=3), generate_colour_testset(4, seed=3)
    assert [s.colours for s in first] == [s.colours for s in again]
    assert np.array_equal(np.asarray(first[0].image), np.asarray(again[0].image))
    assert {s.background for s in first} == set(BACKGROUNDS)
    for sample in generate_colour_testset(16, seed=4, two_colour_share=0.5):
        assert len(set(sample.colours)) == len(sample.colours)
        assert (sample.pattern == "plain") == (len(sample.colours) == 1)


def test_generated_set_reaches_the_target_accuracy(report) -> None:
    samples = generate_colour_testset(150, seed=11)
    hits = [is_correct(s, colour_names(s.image)) for s in samples]
    accuracy = sum(hits) / len(hits)
    report("colour naming accuracy (150 generated items)", f"{accuracy:.3f}")
    assert accuracy >= 0.95


def _thin_line_print(cloth, print_colour) -> Image.Image:
    """A garment of `cloth` with thin slanted lines of `print_colour` (about a fifth of it),
    saved as a JPEG: at the working size the lines are a pixel or two wide, so most of their
    pixels mix the two colours (and JPEG smears their chroma)."""
    import io

    image = Image.new("RGB", (240, 240), (225, 225, 223))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 30, 200, 210), fill=cloth)
    for y in range(36, 206, 12):
        draw.line((44, y, 196, y + 6), fill=print_colour, width=3)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    photo = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return photo.resize((120, 120), Image.Resampling.BOX)


@pytest.mark.parametrize(
    ("cloth", "print_colour", "names"),
    [
        ((50, 100, 160), (110, 70, 40), ["blue", "brown"]),
        ((40, 120, 70), (190, 30, 30), ["green", "red"]),
    ],
    ids=["brown lines on blue", "red lines on green"],
)
def test_a_thin_print_is_named_by_its_own_colour_not_by_its_blends(cloth, print_colour, names):
    """The blends of a brown print with a blue cloth are greyish, those of red on green
    brownish: they are the print's edges, and count for the print and the cloth."""
    found = dominant_colours(_thin_line_print(cloth, print_colour))
    assert [c.name for c in found] == names, found
    assert 0.12 <= found[1].share <= 0.3, found
