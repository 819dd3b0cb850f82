"""A generated colour test set that looks like studio product photos, per condition.

Each item is a garment silhouette (from `colour_testset`) rendered in linear light: a reflectance
(the shade a shopper names) times the light on it, on a white or light-grey backdrop with a soft
drop shadow, then encoded to sRGB with sensor noise and sometimes JPEG compression. Studio light
is soft and falls off across the garment (its lit side gets up to the backdrop's light, its far
side and its folds much less), which is what makes a white T-shirt come out (174, 175, 171) in a
real photo. The conditions:

- `neutral light`, `warm light`, `cool light`: one colour on a light-grey or white backdrop; the
  warm and cool casts tint garment and backdrop alike (a tungsten or a shade-daylight light).
- `white backdrop`: one colour on a near-white backdrop.
- `white on white`, `black on black`: white and off-white garments on white and light-grey
  backdrops; black garments on a black backdrop with a rim light.
- `denim`: a twill texture at several washes (raw, dark, mid, light, bleached), faded along
  the middle; named blue or navy.
- `print`: a garment of one colour with dots or a bandana-like print of a second colour covering
  12-40% of it; both must be named.
- `folds`: deep folds and strong falloff.

`TABLE_CASES` are the garments of issue 23's table, rendered so that the colour named comes out
at the mean RGB a real photo gave.

Example:
    >>> items = generate_studio_testset(2, seed=1)
    >>> sorted({item.condition for item in items}) == sorted(CONDITIONS)
    True
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from stylefinder.recognize.colour_testset import SHADES, SILHOUETTES
from stylefinder.recognize.colours import rgb_to_lab
from stylefinder.recognize.white_balance import linear_light as _linear
from stylefinder.recognize.white_balance import srgb_of as _encode

CONDITIONS: tuple[str, ...] = (
    "neutral light",
    "warm light",
    "cool light",
    "white backdrop",
    "white on white",
    "black on black",
    "denim",
    "print",
    "folds",
)
#: Light casts as linear RGB gains (green 1): a warm tungsten-like and a cool shade-like light.
CASTS = {"warm": (1.0, 0.86, 0.68), "cool": (0.8, 0.92, 1.0)}
#: Denim washes: the mean colour of the cloth (sRGB, in full light), from raw to bleached.
WASHES = {
    "raw": (30, 40, 66),
    "dark": (42, 58, 88),
    "mid": (70, 98, 135),
    "light": (112, 140, 165),
    "bleached": (150, 172, 196),
}
#: Off-whites for the white garments.
WHITES = ((255, 255, 255), (250, 250, 245), (245, 243, 235), (248, 248, 252))
BLACKS = ((10, 10, 10), (18, 18, 20), (14, 14, 16))
#: A colour must differ from its backdrop by at least this (CIELAB) to be told apart, outside the
#: white-on-white and black-on-black conditions.
MIN_BACKGROUND_DE = 15.0
MIN_PAIR_DE = 30.0
_SIDE = (200, 360)


@dataclass(frozen=True)
class StudioSample:
    """One rendered item: its image, the names accepted for each of its colours (the first for
    the main colour), its condition and backdrop."""

    image: Image.Image
    accepted: tuple[frozenset[str], ...]
    condition: str
    backdrop: str
    label: str  # what it shows, for reports ("navy", "denim mid", "blue + white print")


@dataclass(frozen=True)
class TableCase:
    """A garment of issue 23's table: the mean RGB a real photo gave for it, the names a shopper
    accepts, how it is rendered, and (for a print) the print's colour."""

    garment: str
    rgb: tuple[int, int, int]
    accepted: frozenset[str]
    kind: str = "plain"  # "plain", "denim" or "print"
    print_rgb: tuple[int, int, int] | None = None
    print_accepted: frozenset[str] = frozenset()
    reflectance: tuple[int, int, int] | None = None  # the cloth's own colour, where known


BLUE = frozenset({"blue", "navy"})
TABLE_CASES: tuple[TableCase, ...] = (
    TableCase("dark blue jeans", (43, 58, 74), BLUE, "denim"),
    TableCase("dark blue jeans (2)", (47, 61, 77), BLUE, "denim"),
    TableCase("light-wash denim jacket", (117, 141, 155), BLUE, "denim"),
    TableCase("light-wash denim overalls", (114, 139, 156), BLUE, "denim"),
    TableCase("light-wash denim overalls (2)", (122, 144, 158), BLUE, "denim"),
    TableCase("light blue oxford shirt", (170, 187, 216), frozenset({"blue"})),
    TableCase("white T-shirt", (174, 175, 171), frozenset({"white"}), reflectance=(246, 246, 243)),
    TableCase(
        "blue shirt, white bandana print",
        (106, 141, 175),
        frozenset({"blue"}),
        "print",
        (235, 235, 232),
        frozenset({"white"}),
    ),
    # right today, and must stay right
    TableCase("black studded jacket", (28, 28, 30), frozenset({"black"})),
    TableCase("grey sweatshirt", (128, 128, 130), frozenset({"grey"})),
    TableCase("brown leather jacket", (92, 58, 40), frozenset({"brown"})),
    TableCase("black leggings", (22, 22, 24), frozenset({"black"})),
    TableCase("black jeans", (32, 32, 35), frozenset({"black"}), "denim"),
    TableCase("black T-shirt", (30, 30, 30), frozenset({"black"})),
)


def generate_studio_testset(per_condition: int, *, seed: int = 0) -> list[StudioSample]:
    """`per_condition` items of every condition in `CONDITIONS`, seeded.

    Example:
        >>> [item.condition for item in generate_studio_testset(1)][:2]
        ['neutral light', 'warm light']
    """
    rng = np.random.default_rng(seed)
    return [_sample(rng, condition) for _ in range(per_condition) for condition in CONDITIONS]


def render_table_case(case: TableCase, *, seed: int = 0) -> Image.Image:
    """`case` rendered on a light-grey backdrop in soft neutral light, its reflectance set so
    that the garment's mean colour (the print left out) is the case's RGB.

    Example:
        >>> case = TABLE_CASES[6]
        >>> render_table_case(case).size[0] >= _SIDE[0]
        True
    """
    rng = np.random.default_rng(seed)
    scene = _Scene.draw(rng, "light grey", depth=(0.45, 0.55))
    target = _linear(np.array(case.rgb, np.float64))
    if case.reflectance is not None:  # the cloth's colour is known: the light is what varies
        reflectance = _linear(np.array(case.reflectance, np.float64))
        for _ in range(6):
            mean = _linear(_render_case(scene, case, reflectance, seed)[1])
            scene.light = scene.light * float(target.mean() / mean.mean())
        return _render_case(scene, case, reflectance, seed)[0]
    reflectance = target
    for _ in range(6):  # the mean colour is a nonlinear function of the reflectance: iterate
        mean = _render_case(scene, case, reflectance, seed)[1]
        reflectance = np.clip(reflectance * target / _linear(mean), 0, 1)
    return _render_case(scene, case, reflectance, seed)[0]


def is_accepted(sample: StudioSample, names: Sequence[str]) -> bool:
    """The scoring rule: the first name is accepted for the main colour, and every further
    colour of the item (a print) has an accepted name among the names.

    Example:
        >>> item = generate_studio_testset(1)[0]
        >>> is_accepted(item, sorted(item.accepted[0]))
        True
    """
    if not names or names[0] not in sample.accepted[0]:
        return False
    return all(any(name in accepted for name in names) for accepted in sample.accepted[1:])


# --- rendering --------------------------------------------------------------------------


def _lab_of(linear: np.ndarray) -> np.ndarray:
    """CIELAB of linear-light colours, as they come out in an 8-bit image."""
    return rgb_to_lab(np.clip(np.rint(_encode(linear)), 0, 255).astype(np.uint8))


@dataclass
class _Scene:
    """Everything but the garment's colours: size, silhouette, light on garment and backdrop."""

    mask: np.ndarray  # (H, W) 0..1 coverage of the garment
    light: np.ndarray  # (H, W) light on the garment, relative to the backdrop's (about 0.3..1)
    backdrop: np.ndarray  # (H, W) linear backdrop level (grey), its shadow in it
    cast: np.ndarray  # (3,) linear gains of the light's colour
    box: tuple[float, float, float, float]  # x0, y0, width, height of the silhouette

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        backdrop: str,
        *,
        depth: tuple[float, float] = (0.3, 0.55),
        folds: tuple[float, float] = (0.1, 0.35),
        cast: str | None = None,
        level: tuple[int, int] | None = None,
        rim: bool = False,
    ) -> _Scene:
        width, height = (int(v) for v in rng.integers(*_SIDE, size=2))
        box_w, box_h = rng.uniform(0.5, 0.8) * width, rng.uniform(0.5, 0.8) * height
        x0 = rng.uniform(0.08 * width, width - box_w - 0.08 * width)
        y0 = rng.uniform(0.08 * height, height - box_h - 0.08 * height)
        shape = list(SILHOUETTES)[int(rng.integers(len(SILHOUETTES)))]
        body = Image.new("L", (2 * width, 2 * height), 0)
        draw = ImageDraw.Draw(body)
        for part in SILHOUETTES[shape]:
            draw.polygon([(2 * (x0 + x * box_w), 2 * (y0 + y * box_h)) for x, y in part], fill=255)
        small = body.resize((width, height), Image.Resampling.BOX)
        mask = np.asarray(small, np.float64) / 255
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
        angle = rng.uniform(0, 2 * np.pi)  # the soft box's side
        along = (np.cos(angle) * (xx - x0) / box_w + np.sin(angle) * (yy - y0) / box_h + 1) / 2
        falloff = np.clip(along, 0, 1)
        light = rng.uniform(0.92, 1.02) * (1 - rng.uniform(*depth) * falloff)
        for _ in range(int(rng.integers(2, 5))):  # folds: soft dark valleys with lit ridges
            centre = x0 + rng.uniform(0.15, 0.85) * box_w
            tilt = rng.uniform(-0.4, 0.4)
            offset = (xx - centre - tilt * (yy - y0)) / (rng.uniform(0.03, 0.07) * box_w)
            strength = rng.uniform(*folds)
            light *= (
                1
                - strength * np.exp(-(offset**2))
                + 0.3 * strength * np.exp(-((offset - 1.6) ** 2))
            )
        edge = np.asarray(small.filter(ImageFilter.GaussianBlur(3)), np.float64) / 255
        light *= 1 - 0.35 * np.clip(1 - edge, 0, 1) * mask  # the garment darkens at its edges
        if rim:  # a rim light outlines a dark garment
            light += 4.0 * np.clip(1 - edge, 0, 1) * (edge > 0.2)
        low, high = level or ((238, 250) if backdrop == "white" else (205, 232))
        grey = _linear(np.array(float(rng.integers(low, high + 1))))
        gradient = 1 + rng.uniform(-0.06, 0.06) * (yy / height - 0.5)  # studio falloff
        shadow = ImageChops.offset(small, int(rng.integers(-14, 15)), int(rng.integers(4, 18)))
        shadow = np.asarray(shadow.filter(ImageFilter.GaussianBlur(rng.uniform(6, 14))))
        backdrop_level = grey * gradient * (1 - rng.uniform(0.1, 0.35) * shadow / 255)
        gains = np.ones(3)
        if cast is not None:
            gains = np.array(CASTS[cast]) ** rng.uniform(0.6, 1.0)
        return cls(mask, light, backdrop_level, gains, (x0, y0, box_w, box_h))


def _compose(
    rng: np.random.Generator, scene: _Scene, reflectance: np.ndarray, jpeg: bool | None = None
) -> Image.Image:
    """sRGB image of per-pixel linear `reflectance` (H, W, 3) under the scene's light."""
    garment = reflectance * scene.light[..., None]
    mask = scene.mask[..., None]
    linear = (garment * mask + scene.backdrop[..., None] * (1 - mask)) * scene.cast
    pixels = _encode(linear) + rng.uniform(1.5, 4.0) * rng.standard_normal(linear.shape)
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    if jpeg if jpeg is not None else rng.random() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=int(rng.integers(75, 96)))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image


def _denim(rng: np.random.Generator, scene: _Scene, colour: np.ndarray) -> np.ndarray:
    """Per-pixel linear reflectance of denim of mean `colour` (linear RGB): a twill of dark
    warp and light weft threads, yarn grain, and fading along the garment's middle (whiskers,
    a worn seat)."""
    height, width = scene.mask.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    twill = np.sin(2 * np.pi * (xx + yy) / rng.uniform(2.5, 4.5))
    x0, _, box_w, _ = scene.box
    middle = np.exp(-(((xx - x0 - box_w / 2) / (0.25 * box_w)) ** 2))
    texture = (1 + 0.22 * twill) * (1 + 0.1 * rng.standard_normal((height, width)))
    texture *= 1 + rng.uniform(0.1, 0.4) * middle
    texture /= float(texture[scene.mask > 0.5].mean())
    return colour * texture[..., None]


def _print_mask(rng: np.random.Generator, scene: _Scene, style: str) -> np.ndarray:
    """A 0..1 print of dots or of a bandana-like motif (small rings, teardrops and lines)
    covering 12-40% of the garment."""
    height, width = scene.mask.shape
    inside = scene.mask > 0.5
    while True:
        canvas = Image.new("L", (2 * width, 2 * height), 0)
        draw = ImageDraw.Draw(canvas)
        x0, y0, box_w, box_h = scene.box
        step = rng.uniform(0.08, 0.16) * min(box_w, box_h)
        size = rng.uniform(0.22, 0.4) * step
        for gy in np.arange(y0, y0 + box_h, step):
            for gx in np.arange(x0, x0 + box_w, step):
                cx, cy = 2 * (gx + rng.uniform(0, step)), 2 * (gy + rng.uniform(0, step))
                r = 2 * size * rng.uniform(0.7, 1.3)
                if style == "dots":
                    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
                else:  # bandana: rings, teardrops and short lines
                    pick = rng.integers(3)
                    if pick == 0:
                        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=255, width=3)
                    elif pick == 1:
                        draw.ellipse((cx - r, cy - 0.6 * r, cx + r, cy + 0.6 * r), fill=255)
                    else:
                        draw.line((cx - 1.5 * r, cy, cx + 1.5 * r, cy + r), fill=255, width=4)
        mask = np.asarray(canvas.resize((width, height), Image.Resampling.BOX), np.float64) / 255
        share = float(mask[inside].mean())
        if 0.12 <= share <= 0.4:
            return mask


def _shade(rng: np.random.Generator, name: str) -> np.ndarray:
    """A named shade (from `colour_testset.SHADES`), slightly off, as linear RGB."""
    base = np.array(SHADES[name][int(rng.integers(len(SHADES[name])))], np.float64)
    return _linear(np.clip(base + rng.integers(-8, 9, size=3), 0, 255))


def _visible(colour: np.ndarray, backdrop: np.ndarray) -> bool:
    lab = _lab_of(np.array([colour, backdrop]))
    return float(np.linalg.norm(lab[0] - lab[1])) >= MIN_BACKGROUND_DE


def _sample(rng: np.random.Generator, condition: str) -> StudioSample:
    backdrop = "white" if condition == "white backdrop" or rng.random() < 0.35 else "light grey"
    cast = {"warm light": "warm", "cool light": "cool"}.get(condition)
    if condition == "black on black":
        backdrop = "black"
        scene = _Scene.draw(rng, backdrop, level=(28, 45), rim=True)
        colour = _linear(np.array(BLACKS[int(rng.integers(len(BLACKS)))], np.float64))
        reflectance = np.broadcast_to(colour, (*scene.mask.shape, 3))
        return StudioSample(
            _compose(rng, scene, reflectance), (frozenset({"black"}),), condition, backdrop, "black"
        )
    folds = (0.35, 0.6) if condition == "folds" else (0.1, 0.35)
    depth = (0.45, 0.65) if condition == "folds" else (0.3, 0.55)
    scene = _Scene.draw(rng, backdrop, depth=depth, folds=folds, cast=cast)
    shape = (*scene.mask.shape, 3)
    if condition == "white on white":
        colour = _linear(np.array(WHITES[int(rng.integers(len(WHITES)))], np.float64))
        reflectance = np.broadcast_to(colour, shape)
        accepted, label = (frozenset({"white"}),), "white"
    elif condition == "denim":
        wash = list(WASHES)[int(rng.integers(len(WASHES)))]
        reflectance = _denim(rng, scene, _linear(np.array(WASHES[wash], np.float64)))
        accepted, label = (BLUE,), f"denim {wash}"
    else:
        names = list(SHADES)
        backdrop_level = np.full(3, float(np.median(scene.backdrop)))
        while True:
            first = names[int(rng.integers(len(names)))]
            colour = _shade(rng, first)
            if _visible(colour, backdrop_level):
                break
        reflectance = np.broadcast_to(colour, shape)
        accepted, label = (frozenset({first}),), first
        if condition == "print":
            while True:
                second = names[int(rng.integers(len(names)))]
                other = _shade(rng, second)
                pair = _lab_of(np.array([colour, other]))
                if second != first and float(np.linalg.norm(pair[0] - pair[1])) >= MIN_PAIR_DE:
                    break
            style = "dots" if rng.random() < 0.5 else "bandana"
            motif = _print_mask(rng, scene, style)[..., None]
            reflectance = colour * (1 - motif) + other * motif
            accepted = (frozenset({first}), frozenset({second}))
            label = f"{first} + {second} {style}"
    return StudioSample(_compose(rng, scene, reflectance), accepted, condition, backdrop, label)


def _render_case(
    scene: _Scene, case: TableCase, reflectance: np.ndarray, seed: int
) -> tuple[Image.Image, np.ndarray]:
    """The case's image and the mean RGB of its garment pixels (the print left out)."""
    rng = np.random.default_rng(seed + 1)
    shape = (*scene.mask.shape, 3)
    surface = np.broadcast_to(reflectance, shape)
    motif = None
    if case.kind == "denim":  # a twill around the reflectance: its mean stays put
        surface = _denim(rng, scene, reflectance)
    elif case.kind == "print":
        motif = _print_mask(rng, scene, "bandana")[..., None]
        surface = surface * (1 - motif) + _linear(np.array(case.print_rgb)) * motif
    image = _compose(rng, scene, surface, jpeg=False)
    pixels = np.asarray(image, np.float64)
    inside = scene.mask > 0.98
    if motif is not None:
        inside &= motif[..., 0] < 0.02
    return image, pixels[inside].mean(0)
