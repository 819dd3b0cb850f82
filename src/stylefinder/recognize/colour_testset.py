"""A generated test set for colour naming: garment silhouettes in known colours on plain backdrops.

Each item is a t-shirt, dress, trousers, skirt, bag or shoe polygon, jittered in size, position
and aspect, filled with a shade of one palette colour (or two, as halves, stripes or a bag flap
and strap of at least 20% each) and put on a white, light grey, mid grey or black backdrop. The
shades come from common named colours (CSS/X11 and fashion shades), not from the recogniser's
prototypes, and are made realistic with a random off-shade, a shading gradient, a fold, noise and
sometimes JPEG compression.

Left out on principle: a garment colour within `MIN_BACKGROUND_DE` of the backdrop (black on
black, white on white: nobody can see where the garment ends), and two-colour pairs closer than
`MIN_PAIR_DE` (one colour under shading, not two).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from stylefinder.recognize.colours import rgb_to_lab

#: Shades per palette name: common named colours that people call by that name.
SHADES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "black": ((0, 0, 0), (20, 20, 20), (28, 28, 32), (35, 31, 32)),
    "white": ((255, 255, 255), (255, 250, 250), (245, 245, 245), (248, 248, 255)),
    "grey": ((128, 128, 128), (169, 169, 169), (105, 105, 105), (192, 192, 192), (80, 80, 80)),
    "beige": ((245, 222, 179), (210, 180, 140), (225, 198, 153), (235, 215, 180), (200, 173, 127)),
    "brown": ((139, 69, 19), (160, 82, 45), (101, 67, 33), (123, 63, 0), (92, 64, 51)),
    "red": ((255, 0, 0), (178, 34, 34), (220, 20, 60), (200, 16, 46), (139, 0, 0)),
    "pink": ((255, 192, 203), (255, 182, 193), (255, 105, 180), (219, 112, 147), (240, 128, 160)),
    "orange": ((255, 165, 0), (255, 140, 0), (255, 117, 24), (237, 135, 45)),
    "yellow": ((255, 255, 0), (255, 215, 0), (250, 218, 94), (255, 230, 80), (240, 200, 40)),
    "olive": ((128, 128, 0), (107, 142, 35), (85, 107, 47), (120, 120, 60)),
    "green": ((0, 128, 0), (34, 139, 34), (46, 139, 87), (50, 205, 50), (0, 100, 0)),
    "turquoise": ((64, 224, 208), (32, 178, 170), (0, 139, 139), (0, 128, 128), (72, 209, 204)),
    "blue": ((0, 0, 255), (65, 105, 225), (30, 144, 255), (70, 130, 180), (21, 96, 189)),
    "navy": ((0, 0, 128), (25, 25, 112), (31, 40, 79), (20, 30, 60), (0, 32, 96)),
    "purple": ((128, 0, 128), (153, 50, 204), (147, 112, 219), (102, 51, 153), (139, 0, 139)),
}
#: Backdrops: name and the range of its grey level.
BACKGROUNDS: dict[str, tuple[int, int]] = {
    "white": (246, 255),
    "light grey": (215, 235),
    "mid grey": (110, 150),
    "black": (0, 25),
}
#: A garment colour must differ from its backdrop by at least this (CIELAB) to be visible.
MIN_BACKGROUND_DE = 15.0
#: The two colours of a two-colour item differ by at least this (CIELAB).
MIN_PAIR_DE = 25.0

# Silhouettes as polygons in a unit box (x right, y down); a bag is a body plus a strap.
_SHAPES: dict[str, tuple[tuple[tuple[float, float], ...], ...]] = {
    "t-shirt": (
        (
            (0.3, 0.0),
            (0.4, 0.0),
            (0.5, 0.08),
            (0.6, 0.0),
            (0.7, 0.0),
            (1.0, 0.2),
            (0.88, 0.4),
            (0.78, 0.32),
            (0.78, 1.0),
            (0.22, 1.0),
            (0.22, 0.32),
            (0.12, 0.4),
            (0.0, 0.2),
        ),
    ),
    "dress": (
        (
            (0.36, 0.0),
            (0.42, 0.0),
            (0.5, 0.1),
            (0.58, 0.0),
            (0.64, 0.0),
            (0.66, 0.32),
            (0.95, 1.0),
            (0.05, 1.0),
            (0.34, 0.32),
        ),
    ),
    "trousers": (
        ((0.15, 0.0), (0.85, 0.0), (0.95, 1.0), (0.58, 1.0), (0.5, 0.3), (0.42, 1.0), (0.05, 1.0)),
    ),
    "skirt": (((0.25, 0.0), (0.75, 0.0), (0.98, 1.0), (0.02, 1.0)),),
    "bag": (
        ((0.05, 0.38), (0.95, 0.38), (1.0, 1.0), (0.0, 1.0)),
        (
            (0.2, 0.4),
            (0.3, 0.05),
            (0.7, 0.05),
            (0.8, 0.4),
            (0.72, 0.4),
            (0.64, 0.13),
            (0.36, 0.13),
            (0.28, 0.4),
        ),
    ),
    "shoe": (
        (
            (0.0, 0.55),
            (0.05, 0.32),
            (0.35, 0.28),
            (0.45, 0.0),
            (0.72, 0.0),
            (0.76, 0.5),
            (1.0, 0.68),
            (1.0, 1.0),
            (0.0, 1.0),
        ),
    ),
}
_MAX_SIDE = 400  # images are 160..400 pixels wide and high
#: Silhouette names, for per-shape reports.
SHAPES: tuple[str, ...] = tuple(_SHAPES)
#: The silhouettes: per name, polygons in a unit box (x right, y down).
SILHOUETTES = _SHAPES


@dataclass(frozen=True)
class ColourSample:
    """One generated item: its image and the palette names it was painted with."""

    image: Image.Image
    colours: tuple[str, ...]
    background: str
    shape: str
    pattern: str  # "plain", "halves", "stripes" or "flap"


def generate_colour_testset(
    count: int, *, seed: int = 0, two_colour_share: float = 0.3
) -> list[ColourSample]:
    """`count` items; backdrops rotate, colours and shapes are drawn at random (seeded).

    Example:
        >>> items = generate_colour_testset(4, seed=1)
        >>> [len(item.colours) in (1, 2) for item in items]
        [True, True, True, True]
    """
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((_MAX_SIDE + 64, _MAX_SIDE + 64, 3), dtype=np.float32)
    backgrounds = list(BACKGROUNDS)
    return [
        _sample(rng, noise, backgrounds[n % len(backgrounds)], rng.random() < two_colour_share)
        for n in range(count)
    ]


def is_correct(sample: ColourSample, names: Sequence[str]) -> bool:
    """The scoring rule: a one-colour item needs its colour first, a two-colour item both.

    Example:
        >>> item = generate_colour_testset(1, seed=0)[0]
        >>> is_correct(item, list(item.colours))
        True
    """
    if len(sample.colours) == 1:
        return bool(names) and names[0] == sample.colours[0]
    return all(name in names for name in sample.colours)


def _sample(
    rng: np.random.Generator, noise: np.ndarray, background: str, two_colour: bool
) -> ColourSample:
    low, high = BACKGROUNDS[background]
    level = int(rng.integers(low, high + 1))
    backdrop_lab = rgb_to_lab(np.array([level] * 3, dtype=np.uint8))
    while True:
        names = rng.choice(len(SHADES), size=2 if two_colour else 1, replace=False)
        colours = [_shade(rng, list(SHADES)[i]) for i in names]
        labs = [rgb_to_lab(np.array(c, dtype=np.uint8)) for c in colours]
        if min(float(np.linalg.norm(lab - backdrop_lab)) for lab in labs) < MIN_BACKGROUND_DE:
            continue
        if two_colour and float(np.linalg.norm(labs[0] - labs[1])) < MIN_PAIR_DE:
            continue
        break
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    if not two_colour:
        pattern = "plain"
    elif shape == "bag" and rng.random() < 0.5:
        pattern = "flap"
    else:
        pattern = "halves" if rng.random() < 0.5 else "stripes"
    image = _render(rng, noise, shape, pattern, colours, level)
    return ColourSample(image, tuple(list(SHADES)[i] for i in names), background, shape, pattern)


def _shade(rng: np.random.Generator, name: str) -> tuple[int, int, int]:
    """A named shade, slightly off (each channel moved by up to 10 levels)."""
    base = np.array(SHADES[name][int(rng.integers(len(SHADES[name])))])
    return tuple(int(v) for v in np.clip(base + rng.integers(-10, 11, size=3), 0, 255))


def _render(
    rng: np.random.Generator,
    noise: np.ndarray,
    shape: str,
    pattern: str,
    colours: list[tuple[int, int, int]],
    level: int,
) -> Image.Image:
    width, height = (int(v) for v in rng.integers(160, _MAX_SIDE + 1, size=2))
    box_w = rng.uniform(0.45, 0.85) * width
    box_h = rng.uniform(0.45, 0.85) * height
    x0 = rng.uniform(0.05 * width, width - box_w - 0.05 * width)
    y0 = rng.uniform(0.05 * height, height - box_h - 0.05 * height)

    def to_canvas(points: tuple[tuple[float, float], ...]) -> list[tuple[float, float]]:
        return [(2 * (x0 + x * box_w), 2 * (y0 + y * box_h)) for x, y in points]

    while True:  # the second colour's region must hold 20..80% of the garment
        body = Image.new("L", (2 * width, 2 * height), 0)
        second = Image.new("L", body.size, 0)
        draw, draw2 = ImageDraw.Draw(body), ImageDraw.Draw(second)
        for part in _SHAPES[shape]:
            draw.polygon(to_canvas(part), fill=255)
        if pattern == "halves":
            split = y0 + rng.uniform(0.35, 0.65) * box_h
            draw2.rectangle((0, 2 * split, 2 * width, 2 * height), fill=255)
        elif pattern == "stripes":
            period = rng.uniform(0.12, 0.25) * box_h
            y = y0 + rng.uniform(0, period)
            while y < y0 + box_h:
                draw2.rectangle((0, 2 * y, 2 * width, 2 * (y + period / 2)), fill=255)
                y += period
        elif pattern == "flap":
            draw2.polygon(to_canvas(_SHAPES["bag"][1]), fill=255)
            flap = ((0.05, 0.38), (0.95, 0.38), (0.96, 0.6), (0.04, 0.6))
            draw2.polygon(to_canvas(flap), fill=255)
        mask = np.asarray(body) > 0
        share = (np.asarray(second)[mask] > 0).mean() if pattern != "plain" else 0.5
        if 0.2 <= share <= 0.8:
            break
    alpha = np.asarray(body.resize((width, height), Image.Resampling.BOX), np.float32) / 255
    mix = np.asarray(second.resize((width, height), Image.Resampling.BOX), np.float32) / 255
    colour = np.array(colours[0], np.float32)
    if pattern != "plain":
        colour = colour + (np.array(colours[1], np.float32) - colour) * mix[..., None]

    yy = np.arange(height, dtype=np.float32)[:, None]
    xx = np.arange(width, dtype=np.float32)[None, :]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.float32(np.cos(angle) / box_w) * (xx - np.float32(x0 + box_w / 2)) + np.float32(
        np.sin(angle) / box_h
    ) * (yy - np.float32(y0 + box_h / 2))
    light = 1 + np.float32(rng.uniform(0.03, 0.15)) * np.clip(2 * ramp, -1, 1)  # from one side
    fold_x = x0 + rng.uniform(0.2, 0.8) * box_w
    fold_profile = np.exp(-(((np.arange(width, dtype=np.float32) - fold_x) / (0.06 * box_w)) ** 2))
    shade = light - np.float32(rng.uniform(0.0, 0.12)) * fold_profile  # and a vertical fold
    backdrop = level + np.float32(rng.uniform(-4, 4)) * (yy / height - 0.5)  # studio falloff
    if rng.random() < 0.3:  # a soft drop shadow below and to one side
        blur = ImageFilter.GaussianBlur(rng.uniform(4, 12))
        offset = (int(rng.integers(-12, 13)), int(rng.integers(4, 16)))
        shadow = body.resize((width, height), Image.Resampling.BOX)
        shadow = ImageChops.offset(shadow, *offset).filter(blur)
        depth = np.float32(rng.uniform(0.05, 0.2) / 255)
        backdrop = backdrop * (1 - depth * np.asarray(shadow, np.float32))
    weight = (alpha * shade)[..., None]
    pixels = weight * colour + (1 - alpha)[..., None] * backdrop[..., None]
    top, left = (int(v) for v in rng.integers(0, 64, size=2))  # a fresh crop of shared noise
    pixels += np.float32(rng.uniform(1.5, 6.0)) * noise[top : top + height, left : left + width]
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=int(rng.integers(70, 96)))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image
