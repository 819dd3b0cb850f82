"""Garment colours: the dominant colours of an item as names from a fixed palette, with shares.

1. Background: the plain backdrop of a product shot is the region of border-like colour connected
   to the image border, plus a soft drop shadow and backdrop-coloured gaps too wide to be a print
   (the inside of a bag handle); for an RGBA cut-out, the transparent pixels. The flood stops
   at outlines (lines where the colour changes much faster than the backdrop's noise), so an
   item of the backdrop's own colour (a white shirt on white paper, its edges soft and dark)
   keeps its wide parts; backdrop squeezed between outlines (between two legs) stays
   background. When the border has no dominant colour (a photo with scenery), every pixel
   counts.
2. Naming: each garment pixel gets the name of its nearest prototype in CIELAB (several per name,
   so dark and light shades stay in place; low chroma gives black, grey or white by lightness).
3. Grouping: per-name groups are merged where their pixels form a continuum (a shading gradient,
   a fold) rather than two clusters, and each merged group is named by its lit colour; a
   group beside the cloth (a print) by its pixels least blended with the cloth. A grey group
   as light as a white or light-grey backdrop allows (soft light) is white, its lit part
   including what its outlines enclose that the flood took for paper.
4. Shares: pixels that straddle a colour edge (blends, in linear light a mix by area) are
   split between the two groups by area; pixels of lines too thin to have a clean inside
   count as their own colour; outline pixels that are mostly backdrop are left out. A print's
   thin lines and dots blend with the cloth into groups of other names (and JPEG smears their
   chroma): such a group, with no inside of its own, on the way from the cloth to another
   group, is handed to those two by area, as are the cloth's pixels next to the print.

Everything runs on a copy downscaled to at most `max_side` pixels per side (a few milliseconds
per image). Greyscale images come out as black, grey and white.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from stylefinder.errors import BadImageError
from stylefinder.recognize.white_balance import (
    balanced,
    light_gains,
    linear_light,
    reference_colour,
    srgb_of,
)

ColourImage = Union[Image.Image, np.ndarray]  # noqa: UP007

#: The palette: each name with the reference colour shown for it (for swatches and filters).
PALETTE: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "black": (20, 20, 20),
        "white": (250, 250, 250),
        "grey": (128, 128, 128),
        "beige": (225, 200, 160),
        "brown": (120, 70, 40),
        "red": (200, 30, 30),
        "pink": (245, 150, 180),
        "orange": (250, 140, 20),
        "yellow": (250, 220, 40),
        "olive": (120, 120, 40),
        "green": (40, 140, 60),
        "turquoise": (40, 180, 175),
        "blue": (50, 110, 210),
        "navy": (25, 35, 90),
        "purple": (130, 50, 150),
    }
)
#: The palette names, in display order.
COLOUR_NAMES: tuple[str, ...] = tuple(PALETTE)

# Further prototypes per name: a name covers the region of CIELAB nearer to one of its
# prototypes than to any other name's. Dark and light variants keep shaded garments in place.
_EXTRA_PROTOTYPES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "black": ((0, 0, 0), (35, 35, 38)),
    "white": ((255, 255, 255), (238, 238, 234)),
    "grey": ((75, 75, 78), (100, 100, 100), (165, 165, 165), (200, 200, 200)),
    # (180, 155, 115): tan, beige's darker end, which a beige cloth's lit part keeps in soft
    # light (olive is greener)
    "beige": ((240, 225, 200), (210, 180, 140), (200, 180, 150), (245, 222, 179), (180, 155, 115)),
    "brown": ((90, 60, 40), (150, 100, 60), (60, 40, 30), (139, 69, 19), (160, 82, 45)),
    "red": ((255, 0, 0), (220, 20, 60), (150, 20, 30), (120, 10, 20), (178, 34, 34)),
    "pink": (
        (255, 182, 193),
        (250, 212, 220),
        (255, 105, 180),
        (220, 110, 150),
        (255, 20, 147),
        (200, 80, 120),
    ),
    "orange": ((255, 165, 0), (240, 110, 30), (230, 130, 60), (255, 120, 60)),
    "yellow": ((255, 240, 0), (255, 215, 0), (245, 220, 100), (240, 200, 50)),
    "olive": ((128, 128, 0), (107, 142, 35), (85, 107, 47), (130, 130, 80)),
    "green": ((0, 128, 0), (34, 139, 34), (50, 180, 80), (0, 90, 40), (100, 200, 100)),
    "turquoise": ((64, 224, 208), (0, 150, 150), (0, 120, 120), (70, 190, 190), (32, 178, 170)),
    "blue": (
        (0, 0, 255),
        (65, 105, 225),
        (30, 144, 255),
        (70, 130, 180),
        (100, 149, 237),
        (135, 206, 235),
        (30, 70, 160),
    ),
    "navy": ((0, 0, 128), (25, 25, 112), (31, 40, 79), (20, 30, 60), (0, 32, 96)),
    "purple": ((128, 0, 128), (153, 50, 204), (147, 112, 219), (102, 51, 153), (200, 162, 200)),
}

#: Pixels are named in OKLab with a and b weighted this much more than lightness, so that
#: shading (mostly a change of lightness) moves a colour less than a change of hue would.
NAMING_CHROMA_WEIGHT = 2.0
#: Hue decides where there is one: OKLab chroma from which a colour has a visible hue, lower for
#: blues (OKLab hue angles BLUE_HUES), higher below lightness DARK_L (near black).
VISIBLE_CHROMA = 0.04
BLUE_CHROMA = 0.03
BLUE_HUES = (200.0, 300.0)
DARK_L = 0.3
DARK_CHROMA = 0.05
HUE_CHROMA = 0.08  # a faint hue is named as if this strong
#: A group is named by its lit part: the LIT_PERCENTILE of its pixels' luminance, at most
#: MAX_LIT_GAIN times their mean.
LIT_PERCENTILE = 90.0
MAX_LIT_GAIN = 1.8
#: A group beside the cloth (the largest group) is named by the PURE_SHARE of its pixels least
#: blended with the cloth (`_purest`): a print's edges and thin lines mix in the cloth's colour.
PURE_SHARE = 0.1
#: On a white or light-grey backdrop (CIELAB L from WHITE_PAPER_L), a grey group is white when
#: its lit part comes near the backdrop's lightness and its mean lightness reaches WHITE_MIN_L.
#: On white paper (L from WHITE_BACKDROP_L) the garment and the paper reflect alike, and the lit
#: part may fall short by the light it misses in soft light (its lit side faces a soft box less
#: squarely than the flat paper does): up to WHITE_MARGIN (CIELAB L). A light-grey paper
#: (L up to GREY_BACKDROP_L) reflects less than a white garment, which makes up for that light,
#: so there a group well below the paper is light grey: WHITE_MARGIN_GREY; linear in between.
WHITE_MARGIN = 16.0
WHITE_MARGIN_GREY = 5.5
WHITE_BACKDROP_L = 95.0
GREY_BACKDROP_L = 90.0
WHITE_PAPER_L = 75.0  # only a white or light-grey backdrop
WHITE_MIN_L = 55.0
#: A white garment's lit part, as light as a light-grey paper, may go to the backdrop: it counts
#: where it is at least this share of the item (`_lit_as_paper`).
LOST_SHARE = 0.25
#: Border pixels within this CIELAB distance of the border's main colour count as background.
BACKGROUND_DE = 10.0
#: A border is a plain background only when at least this share of it has one colour.
MIN_BORDER_SHARE = 0.4
#: Backdrop-coloured areas inside the item at least 2 * HOLE_RADIUS + 1 pixels wide (per 128
#: pixels of the working size) are background seen through a gap (a bag handle), not a print,
#: unless they outweigh the rest of the item (then the item has the backdrop's colour).
HOLE_RADIUS = 3
#: A soft shadow on the backdrop is up to SHADOW_DEPTH darker (CIELAB L), at most SHADOW_TINT
#: off its hue and chroma, and changes by less than SHADOW_STEP per pixel (outlines are sharper).
SHADOW_DEPTH = 35.0
SHADOW_TINT = 6.0
SHADOW_STEP = 3.0
#: Outlines: the backdrop's flood and its shadow stop at lines where the 3x3-smoothed colour
#: changes (CIELAB per pixel) more than OUTLINE_STRONG times the backdrop's median change (its
#: noise), and at the pixels joined to those that change more than OUTLINE_WEAK times it
#: (hysteresis), at least OUTLINE_MIN (weak) and twice it (strong).
OUTLINE_WEAK = 2.0
OUTLINE_STRONG = 4.0
OUTLINE_MIN = 1.0
#: A pixel differing from a neighbour by more than this, and lying between its two neighbours
#: along that row or column, straddles a colour edge (mixed colours); one that differs from
#: both alike is a line too thin to have an inside, and keeps its colour.
EDGE_DE = 25.0
#: Colour groups whose mean colours are closer than this (CIELAB) are always merged, ...
MERGE_DE = 16.0
#: ... and those closer than MERGE_FAR_DE when the emptiest stretch of the way between them holds
#: at least CONTINUUM_SHARE of their peak density (a shading gradient, not two colours).
MERGE_FAR_DE = 45.0
CONTINUUM_SHARE = 0.2
#: ... and only with the same tint: chromaticities of their linear light at most this far apart
#: (shading keeps a colour's chromaticity; a print blended into the cloth at its edges does not).
MERGE_TINT = 0.05
#: A print's blends with the cloth (`_unmix_blends`): a group with at most BLEND_INSIDE of its
#: pixels inside it, on the way from the cloth to another group (BLEND_ALONG of it, off it
#: by at most BLEND_OFF of its length); cloth pixels next to a print from RING_ALONG of it.
BLEND_INSIDE = 0.3
BLEND_ALONG = (0.1, 0.9)
BLEND_OFF = 0.25
RING_ALONG = 0.15
_CONTINUUM_EDGES = np.linspace(-0.1, 1.1, 13)  # positions along the way, as binned


@dataclass(frozen=True)
class ColourShare:
    """One dominant colour: its palette name, its share of the garment (0..1), its mean RGB."""

    name: str
    share: float
    rgb: tuple[int, int, int]


def dominant_colours(
    image: ColourImage,
    *,
    max_colours: int = 3,
    min_share: float = 0.1,
    max_side: int = 128,
    balance: bool = True,
) -> list[ColourShare]:
    """The garment's dominant palette colours, most common first, ignoring a plain background.

    Returns at most `max_colours` colours whose share of the garment pixels is at least
    `min_share`; when none reaches it, the single most common colour; an empty list only when
    every pixel is transparent. An image that is all one plain colour is named by that colour.
    `image` is a PIL image (any mode; transparent pixels are background) or an array of shape
    (H, W), (H, W, 1), (H, W, 3) or (H, W, 4): uint8, or float in 0..1 (floats above 1 are
    taken as 0..255). Raises `BadImageError` for anything else. With `balance`, the light's
    tint is taken out first (`white_balance`: by the backdrop, else the brightest neutral
    pixels), and the colours come out as under neutral light.

    Example:
        >>> red = Image.new("RGB", (64, 64), "white")
        >>> red.paste((200, 30, 30), (16, 16, 48, 48))
        >>> [(c.name, round(c.share, 2)) for c in dominant_colours(red)]
        [('red', 1.0)]
    """
    if max_colours < 1:
        raise ValueError(f"max_colours must be at least 1, got {max_colours}")
    rgb, opaque = _pixels(image, max_side)
    lab, names = _lab_and_names(rgb)
    garment, backdrop, counted = _regions(lab, rgb, opaque)
    if balance:
        rgb, lab, names, backdrop = _balanced(rgb, lab, names, backdrop)
    groups, members = _colour_groups(lab, rgb, names, counted)
    _name_whites(groups, backdrop, lambda: _lit_as_paper(lab, opaque, garment))
    _unmix_blends(groups, members, counted, rgb)  # a print's blends with the cloth
    edges = garment & ~counted
    if backdrop is not None:  # outline pixels are part garment, part backdrop
        outline = edges & _kernels().dilate(~garment)
        _count_outline(groups, rgb[outline], backdrop)
        edges &= ~outline
    _count_edges(groups, rgb[edges])
    total = sum(g.count for g in groups)
    if total == 0:
        return []
    shares = [
        ColourShare(g.name, g.count / total, tuple(int(v) for v in np.rint(g.mean_rgb)))
        for g in sorted(groups, key=lambda g: -g.count)
    ]
    chosen = [s for s in shares if s.share >= min_share][:max_colours]
    return chosen or shares[:1]


def colour_names(image: ColourImage, *, max_colours: int = 3, min_share: float = 0.1) -> list[str]:
    """Just the names of `dominant_colours`, most common first (the `colours` metadata).

    Example:
        >>> img = Image.new("RGB", (64, 64), "white")
        >>> img.paste((25, 35, 90), (16, 8, 48, 32))
        >>> img.paste((245, 150, 180), (16, 32, 48, 56))
        >>> sorted(colour_names(img))
        ['navy', 'pink']
    """
    return [c.name for c in dominant_colours(image, max_colours=max_colours, min_share=min_share)]


def name_colour(rgb: tuple[int, int, int] | np.ndarray) -> str:
    """The palette name of one sRGB colour (0..255).

    Example:
        >>> name_colour((0, 0, 128))
        'navy'
    """
    pixel = np.asarray(rgb, dtype=np.float64).reshape(1, 3)
    if pixel.min() < 0 or pixel.max() > 255:
        raise ValueError(f"an RGB colour has components in 0..255, got {tuple(pixel[0])}")
    return COLOUR_NAMES[int(_nearest_name(pixel)[0])]


def garment_mask(image: ColourImage, *, max_side: int = 128) -> np.ndarray:
    """Boolean mask of the non-background pixels of `image`, downscaled to at most `max_side`.

    Example:
        >>> img = Image.new("RGB", (40, 20), "white")
        >>> img.paste((0, 0, 0), (10, 5, 30, 15))
        >>> int(garment_mask(img).sum())
        200
    """
    rgb, opaque = _pixels(image, max_side)
    return _regions(_lab_and_names(rgb)[0], rgb, opaque)[0]


def warm_up() -> None:
    """Compile the pixel loops now, or load them from numba's cache: about 25 s on the first
    run after an install (2 cores), then a fraction of a second; servers call it before they
    serve, so that no request waits for the compiler.

    Example:
        >>> warm_up()
    """
    image = Image.new("RGB", (96, 96), (232, 232, 230))  # a garment and its shadow on a backdrop
    draw = ImageDraw.Draw(image)
    draw.ellipse((30, 78, 80, 92), fill=(200, 200, 198))
    draw.rectangle((28, 10, 68, 80), fill=(30, 40, 120))
    draw.rectangle((28, 45, 68, 60), fill=(240, 150, 180))
    dominant_colours(image.filter(ImageFilter.GaussianBlur(1)))
    warm = Image.merge(
        "RGB",
        [
            band.point(lambda v, g=g: int(v * g))
            for band, g in zip(image.split(), (1.0, 0.93, 0.8), strict=True)
        ],
    )  # white balanced: writable pixels
    dominant_colours(warm.filter(ImageFilter.GaussianBlur(1)))


@functools.cache
def _kernels():
    """The compiled pixel loops, imported on first use (importing numba takes a moment)."""
    from stylefinder.recognize import _colour_kernels

    return _colour_kernels


# --- input --------------------------------------------------------------------------------


def _pixels(image: ColourImage, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Downscaled (H, W, 3) uint8 RGB pixels and an (H, W) mask of the opaque ones."""
    if isinstance(image, Image.Image):
        pil = image
    elif isinstance(image, np.ndarray):
        pil = _array_to_image(image)
    else:
        raise BadImageError(f"image: expected a PIL image or a numpy array, got {type(image)}")
    if pil.width < 1 or pil.height < 1:
        raise BadImageError(f"image: image has no pixels ({pil.width}x{pil.height})")
    has_alpha = pil.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (
        pil.mode == "P" and "transparency" in pil.info
    )
    target = "RGBA" if has_alpha else "RGB"
    if pil.mode not in {"RGB", "RGBA", "L", "LA"}:
        pil = pil.convert(target)  # resize first where it can, converting a big image is slow
    scale = max_side / max(pil.size)
    if scale < 1:
        size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
        pil = pil.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    if pil.mode != target:
        pil = pil.convert(target)
    pixels = np.array(pil)  # writable, as white-balanced pixels are: one kernel signature
    if has_alpha:
        return np.ascontiguousarray(pixels[..., :3]), pixels[..., 3] >= 128
    return pixels, np.ones(pixels.shape[:2], dtype=bool)


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise BadImageError(
            f"image: expected an array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
            f"got {array.shape}"
        )
    if array.size == 0:
        raise BadImageError(f"image: image has no pixels ({array.shape})")
    if array.dtype != np.uint8:
        values = np.asarray(array, dtype=np.float64)
        if not np.isfinite(values).all():
            raise BadImageError("image: array has NaN or infinite values")
        if np.issubdtype(array.dtype, np.floating) and values.max() <= 1.0:
            values = values * 255.0
        array = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    mode = "L" if array.ndim == 2 else ("RGB" if array.shape[2] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(array), mode)


# --- colour space -------------------------------------------------------------------------

_LINEAR = np.array(
    [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in np.arange(256) / 255]
)
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
) / np.array([[0.95047], [1.0], [1.08883]])  # normalised to the D65 white point


def _linear(rgb: np.ndarray) -> np.ndarray:
    """Linear-light RGB (0..1) of sRGB values 0..255."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        return _LINEAR[rgb]
    return linear_light(rgb)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values 0..255, any leading shape; float32.

    Example:
        >>> rgb_to_lab(np.array([0, 0, 128], dtype=np.uint8)).round()
        array([ 13.,  48., -65.], dtype=float32)
    """
    xyz = _linear(rgb) @ _RGB_TO_XYZ.T
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    lab = np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )
    return lab.astype(np.float32)


_RGB_TO_LMS = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ]
)
_LMS_TO_OKLAB = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ]
)


def _naming_space(rgb: np.ndarray) -> np.ndarray:
    """OKLab of sRGB values (Ottosson 2020; its hues stay put from blue to purple, where CIELAB's
    bend), L scaled to 0..100 and a, b by NAMING_CHROMA_WEIGHT * 100; float32."""
    oklab = np.cbrt(_linear(rgb) @ _RGB_TO_LMS.T) @ _LMS_TO_OKLAB.T
    scale = np.array([100.0, 100.0 * NAMING_CHROMA_WEIGHT, 100.0 * NAMING_CHROMA_WEIGHT])
    return (oklab * scale).astype(np.float32)


_PROTOTYPE_NAMES = np.array(
    [i for i, name in enumerate(COLOUR_NAMES) for _ in (PALETTE[name], *_EXTRA_PROTOTYPES[name])]
)
_PROTOTYPES = _naming_space(
    np.array(
        [p for name in COLOUR_NAMES for p in (PALETTE[name], *_EXTRA_PROTOTYPES[name])],
        dtype=np.uint8,
    )
)


_ACHROMATIC = np.array([COLOUR_NAMES.index(name) for name in ("black", "white", "grey")])
_CHROMATIC = ~np.isin(_PROTOTYPE_NAMES, _ACHROMATIC)


def visible_hue(rgb: np.ndarray) -> np.ndarray:
    """Whether each sRGB colour (N, 3) has a hue a shopper names: its OKLab chroma reaches
    VISIBLE_CHROMA, less for blues (BLUE_CHROMA: faded denim and a light blue oxford shirt are
    blue), more for the darkest colours (near black, a tint is noise).

    Example:
        >>> visible_hue(np.array([[117, 141, 155], [128, 128, 128]])).tolist()
        [True, False]
    """
    oklab = np.cbrt(_linear(np.asarray(rgb).reshape(-1, 3)) @ _RGB_TO_LMS.T) @ _LMS_TO_OKLAB.T
    chroma = np.hypot(oklab[:, 1], oklab[:, 2])
    hue = np.degrees(np.arctan2(oklab[:, 2], oklab[:, 1])) % 360
    needed = np.where((hue >= BLUE_HUES[0]) & (hue <= BLUE_HUES[1]), BLUE_CHROMA, VISIBLE_CHROMA)
    needed = np.where(oklab[:, 0] < DARK_L, DARK_CHROMA, needed)
    return chroma >= needed


def _nearest_name(rgb: np.ndarray, *, hue_decides: bool = True) -> np.ndarray:
    """Index into COLOUR_NAMES of the nearest prototype, for (N, 3) sRGB values; with
    `hue_decides`, a colour with a visible hue (`visible_hue`) gets the nearest name that has
    one, never black, grey or white (groups are named so; single pixels, which only seed the
    groups, are not, so that a faintly tinted white print stays apart from a faded blue)."""
    rgb = np.asarray(rgb).reshape(-1, 3)
    points = _naming_space(rgb)
    hued = visible_hue(rgb) if hue_decides else np.zeros(len(rgb), bool)
    names = np.empty(len(points), dtype=np.uint8)
    for start in range(0, len(points), 65536):
        chunk = points[start : start + 65536]
        distance = -2 * chunk @ _PROTOTYPES.T + (_PROTOTYPES * _PROTOTYPES).sum(1)
        nearest = _PROTOTYPE_NAMES[np.argmin(distance, axis=1)]
        use = hued[start : start + 65536] & np.isin(nearest, _ACHROMATIC)
        if use.any():  # named by its hue: its chroma raised to HUE_CHROMA, lightness kept
            faint = chunk[use].copy()
            chroma = np.hypot(faint[:, 1], faint[:, 2]) / (100 * NAMING_CHROMA_WEIGHT)
            faint[:, 1:] *= (np.maximum(chroma, HUE_CHROMA) / np.maximum(chroma, 1e-9))[:, None]
            prototypes = _PROTOTYPES[_CHROMATIC]
            distance = -2 * faint @ prototypes.T + (prototypes * prototypes).sum(1)
            nearest[use] = _PROTOTYPE_NAMES[_CHROMATIC][np.argmin(distance, axis=1)]
        names[start : start + 65536] = nearest
    return names


@functools.cache
def _lookup_tables() -> tuple[np.ndarray, np.ndarray]:
    """CIELAB and palette name of every colour on a 64-level-per-channel grid (built once)."""
    levels = np.arange(2, 256, 4, dtype=np.uint8)  # the centre of each 4-level bin
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    return rgb_to_lab(grid), _nearest_name(grid, hue_decides=False)


def _lab_and_names(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CIELAB (H, W, 3) and palette-name indices (H, W) of uint8 RGB pixels, via lookup."""
    return _kernels().lookup(rgb, *_lookup_tables())


def _balanced(
    rgb: np.ndarray, lab: np.ndarray, names: np.ndarray, backdrop: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The pixels (RGB, CIELAB, names) and the backdrop under neutral light, by the scene's
    neutral reference; unchanged where there is none or the light is neutral already."""
    backdrop_lab = None if backdrop is None else rgb_to_lab(np.rint(backdrop).astype(np.uint8))
    reference = reference_colour(rgb, lab, backdrop, backdrop_lab)
    gains = None if reference is None else light_gains(reference)
    if gains is None:
        return rgb, lab, names, backdrop
    rgb = balanced(rgb, gains)
    lab, names = _lab_and_names(rgb)
    if backdrop is not None:
        backdrop = srgb_of(np.clip(_linear(backdrop) * gains, 0, 1))
    return rgb, lab, names, backdrop


# --- background ---------------------------------------------------------------------------


def _regions(
    lab: np.ndarray, rgb: np.ndarray, opaque: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The garment: pixels neither transparent nor part of the plain background around the item;
    the backdrop's RGB colour (None for a cut-out or a photo without a plain backdrop); and the
    garment pixels away from outlines and colour edges, where colours are mixed.

    The backdrop is the border's main colour when at least MIN_BORDER_SHARE of the border lies
    within BACKGROUND_DE of it (a noisy backdrop widens that a little); the background is the
    region of that colour connected to the border, plus wide backdrop-coloured gaps (HOLE_RADIUS)
    and a soft drop shadow next to it: the backdrop colour made darker by up to SHADOW_DEPTH,
    keeping its hue, without sharp edges, in areas wider than a line. Neither crosses an
    outline (OUTLINE_WEAK, OUTLINE_STRONG); what only outlines keep from the flood is an item
    where it is wide (HOLE_RADIUS), and background where not. When nothing stands out,
    the image is all one colour and every pixel counts. All of it runs in one compiled pass
    (`_colour_kernels.regions`).
    """
    radius = max(1, round(HOLE_RADIUS * max(opaque.shape) / 128))
    shadow = np.array([SHADOW_DEPTH, SHADOW_TINT, SHADOW_STEP])
    garment, backdrop, counted = _kernels().regions(
        lab,
        np.ascontiguousarray(rgb),
        opaque,
        radius,
        BACKGROUND_DE,
        MIN_BORDER_SHARE,
        shadow,
        EDGE_DE,
        np.array([OUTLINE_WEAK, OUTLINE_STRONG, OUTLINE_MIN]),
    )
    return garment, (None if np.isnan(backdrop[0]) else backdrop), counted


# --- naming -------------------------------------------------------------------------------


def _colour_groups(
    lab: np.ndarray, rgb: np.ndarray, names: np.ndarray, counted: np.ndarray
) -> list[_Group]:
    """The `counted` pixels grouped by palette name, merged where they differ only by shading,
    each merged group named by its lit colour (`_lit_colour`)."""
    counts, centres, rgb_sums, members = _kernels().colour_groups(
        lab,
        rgb,
        names,
        counted,
        MERGE_DE,
        MERGE_FAR_DE,
        CONTINUUM_SHARE,
        _CONTINUUM_EDGES,
        _LINEAR,
        MERGE_TINT,
    )
    pixels = rgb[counted]
    lightness = lab[..., 0][counted]
    cloth = int(np.argmax(counts)) if len(counts) else 0
    groups: dict[str, _Group] = {}
    for at, (count, centre, rgb_sum) in enumerate(
        zip(counts.tolist(), centres, rgb_sums, strict=True)
    ):
        mine = members == at
        own, own_l = pixels[mine], lightness[mine]
        if at != cloth:  # a print: named by its pixels least blended with the cloth
            pure = _purest(rgb_sums[cloth] / counts[cloth], own)
            own, own_l = own[pure], own_l[pure]
        lit_rgb = _lit_colour(own.mean(0), own)
        name = COLOUR_NAMES[int(_nearest_name(lit_rgb)[0])]
        lit_l = float(_percentile(own_l, LIT_PERCENTILE))
        if name in groups:
            group = groups[name]
            group.count, group.clean = group.count + count, group.clean + count
            group.lab_sum, group.rgb_sum = group.lab_sum + centre * count, group.rgb_sum + rgb_sum
            group.lit_l = max(group.lit_l, lit_l)
            group.parts.append(at)
        else:
            groups[name] = _Group(name, count, count, centre * count, rgb_sum, lit_l, [at])
    return list(groups.values()), members


def _percentile(values: np.ndarray, q: float) -> float:
    """`np.percentile(values, q)` (linear method) of a non-empty array, by a partial sort
    (np.percentile costs a tenth of a millisecond a call on small arrays)."""
    flat = np.asarray(values, np.float64).ravel()
    position = (len(flat) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(flat) - 1)
    part = np.partition(flat, (low, high))
    return float(part[low] + (part[high] - part[low]) * (position - low))


def _purest(cloth_rgb: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Which pixels of a group are least blended with the cloth (mean `cloth_rgb`): the
    PURE_SHARE of them furthest from it along the way from the cloth's colour to the group's,
    in linear light. Where a print meets the cloth, and across thin print lines, a pixel holds
    both, and its linear light is their mix; the print's own colour is at the far end."""
    light = _linear(pixels)
    base = _linear(cloth_rgb)
    way = light.mean(0) - base
    along = (light - base) @ way
    return along >= _percentile(along, 100 * (1 - PURE_SHARE))


def _lit_colour(mean_rgb: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """The colour of a group where it faces the light: its mean colour, in linear light,
    brightened by how much lighter its lit part (the LIT_PERCENTILE of luminance) is than its
    mean (at most MAX_LIT_GAIN). Soft studio light and folds darken most of a garment; a
    shopper names the colour it shows where it is lit (beige, not olive)."""
    luminance = _linear(pixels) @ np.array([0.2126, 0.7152, 0.0722])
    mean = float(luminance.mean())
    if mean <= 0:
        return mean_rgb
    gain = min(max(float(_percentile(luminance, LIT_PERCENTILE)) / mean, 1.0), MAX_LIT_GAIN)
    return srgb_of(np.clip(_linear(mean_rgb) * gain, 0, 1))


def _name_whites(
    groups: list[_Group], backdrop: np.ndarray | None, lit_as_paper: Callable[[], float]
) -> None:
    """Rename the grey group white where its lit part comes near the backdrop's lightness (a
    white garment in soft light; see WHITE_MARGIN), merging it into a white group there is
    already. Its lit part may have been taken for the paper (`lit_as_paper`, asked only when
    the counted part falls short)."""
    grey = next((g for g in groups if g.name == "grey"), None)
    if grey is None or backdrop is None or grey.lab_sum[0] / grey.clean < WHITE_MIN_L:
        return
    paper = float(rgb_to_lab(np.clip(np.rint(backdrop), 0, 255).astype(np.uint8))[0])
    whiteness = np.clip((paper - GREY_BACKDROP_L) / (WHITE_BACKDROP_L - GREY_BACKDROP_L), 0, 1)
    margin = WHITE_MARGIN_GREY + whiteness * (WHITE_MARGIN - WHITE_MARGIN_GREY)
    if paper < WHITE_PAPER_L:
        return
    if grey.lit_l < paper - margin and max(grey.lit_l, lit_as_paper()) < paper - margin:
        return
    white = next((g for g in groups if g.name == "white"), None)
    if white is None:
        grey.name = "white"
        return
    white.count, white.clean = white.count + grey.count, white.clean + grey.clean
    white.lab_sum, white.rgb_sum = white.lab_sum + grey.lab_sum, white.rgb_sum + grey.rgb_sum
    white.parts += grey.parts
    groups.remove(grey)


def _unmix_blends(
    groups: list[_Group], members: np.ndarray, counted: np.ndarray, rgb: np.ndarray
) -> None:
    """Hand a print's blends with the cloth (the largest group) to the two of them.

    A thin print line or a small dot has few pixels of its own colour: most mix it with the
    cloth, and JPEG's half-resolution chroma smears them further, so that they form groups of
    other names (a brown print on blue gives grey pixels). A group with little inside of its
    own (at most BLEND_INSIDE of its pixels away from its border) whose colour lies on the way
    from the cloth to another group (sRGB, off it by at most BLEND_OFF of the way's length,
    BLEND_ALONG of the way along) is such a blend: that share of it goes to the other group,
    the rest to the cloth. Cloth pixels next to a print are partly print too (their linear
    light mixes both by area): the print gets what they hold of it, from RING_ALONG up. A
    wide stripe has an inside and keeps its own name."""
    if len(groups) < 2:
        return
    cloth = max(groups, key=lambda g: g.count)
    where = np.full(counted.shape, -1, np.int64)
    where[counted] = members
    masks = {id(g): np.isin(where, g.parts) for g in groups}
    kernels = _kernels()
    for group in sorted(groups, key=lambda g: g.count):
        if group is cloth or len(groups) < 3:
            continue
        mask = masks[id(group)]
        size = int(mask.sum())
        if not size or int(kernels.erode(mask, 1).sum()) > BLEND_INSIDE * size:
            continue
        found = _blend_of(group, cloth, [g for g in groups if g is not group and g is not cloth])
        if found is None:
            continue
        other, along = found
        other.count += along * group.count
        cloth.count += (1 - along) * group.count
        masks[id(other)] |= mask
        groups.remove(group)
    base = _linear(cloth.mean_rgb)
    for other in groups:
        if other is cloth:
            continue
        ring = kernels.dilate(masks[id(other)]) & masks[id(cloth)]
        placed = _on_the_way(_linear(rgb[ring]), base, _linear(other.mean_rgb))
        if placed is None:
            continue
        along, off = placed
        moved = float(np.clip(along[(along >= RING_ALONG) & (off <= BLEND_OFF)], 0, 1).sum())
        other.count += moved
        cloth.count -= moved


def _blend_of(group: _Group, cloth: _Group, others: list[_Group]) -> tuple[_Group, float] | None:
    """The group of `others` that `group` is a blend of with the cloth (see `_unmix_blends`),
    with how far along the way from the cloth to it the blend is; None when there is none."""
    base = cloth.mean_rgb / 255
    best: tuple[float, _Group, float] | None = None
    for other in others:
        placed = _on_the_way(group.mean_rgb[None] / 255, base, other.mean_rgb / 255)
        if placed is None:
            continue
        along, off = float(placed[0][0]), float(placed[1][0])
        fits = BLEND_ALONG[0] <= along <= BLEND_ALONG[1] and off <= BLEND_OFF
        if fits and (best is None or off < best[0]):
            best = (off, other, along)
    return None if best is None else (best[1], best[2])


def _on_the_way(
    points: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Where colours (N, 3) lie on the way from `start` to `end`: how far along it (0 at the
    start, 1 at the end) and how far off it, in lengths of the way; None for no way."""
    way = end - start
    length = float(way @ way)
    if length <= 1e-9 or not len(points):
        return None
    offset = points - start
    along = offset @ way / length
    off = np.linalg.norm(offset - along[:, None] * way, axis=1) / np.sqrt(length)
    return along, off


def _lit_as_paper(lab: np.ndarray, opaque: np.ndarray, garment: np.ndarray) -> float:
    """CIELAB L of the lit part (LIT_PERCENTILE) of what the item's outlines enclose but the
    garment lost to the backdrop, where that is at least LOST_SHARE of the item (-inf
    otherwise): a white garment on light-grey paper is as light as the paper where it faces the
    light, and the flood takes that part for paper (a light-grey one is darker there)."""
    ring = 2 if min(opaque.shape) >= 16 else 1
    border = np.zeros(opaque.shape, bool)
    border[:ring], border[-ring:], border[:, :ring], border[:, -ring:] = True, True, True, True
    kernels = _kernels()
    gradient = kernels.steps(kernels.box3(lab))
    noise = float(np.median(gradient[border]))
    edge = kernels.outlines(
        gradient,
        max(OUTLINE_WEAK * noise, OUTLINE_MIN),
        max(OUTLINE_STRONG * noise, 2 * OUTLINE_MIN),
    )
    lost = opaque & ~edge & ~kernels.flood(~edge, border) & ~garment
    if not lost.any() or lost.sum() < LOST_SHARE * (lost.sum() + garment.sum()):
        return -np.inf
    return _percentile(lab[..., 0][lost], LIT_PERCENTILE)


def _count_edges(groups: list[_Group], rgb: np.ndarray) -> None:
    """Count pixels on colour edges, blends of two groups' colours, with both groups by the
    area each covers: in linear light, a pixel that straddles two colours is their mix by
    area, so it is split by where it lies along the blend line (of two groups' mean colours)
    that passes nearest to it. (The nearest colour in CIELAB would give a blend of a dark and a
    light colour to the light one: lightness is a cube root of light.)"""
    if not groups or not len(rgb):
        return
    light = _linear(rgb)
    ends = _linear(np.array([g.mean_rgb for g in groups]))
    first, second = np.triu_indices(len(groups))
    way = ends[second] - ends[first]  # (pairs, 3)
    offset = light[:, None, :] - ends[first][None]  # (pixels, pairs, 3)
    amount = np.clip(
        np.einsum("npk,pk->np", offset, way) / np.maximum((way * way).sum(1), 1e-12), 0, 1
    )
    residual = ((offset - amount[..., None] * way[None]) ** 2).sum(-1)
    pair = residual.argmin(1)
    along = amount[np.arange(len(light)), pair]
    extra = np.bincount(first[pair], 1 - along, len(groups))
    extra += np.bincount(second[pair], along, len(groups))
    for group, more in zip(groups, extra.tolist(), strict=True):
        group.count += more


def _count_outline(groups: list[_Group], rgb: np.ndarray, backdrop: np.ndarray) -> None:
    """Count outline pixels, blends of a group's colour and the backdrop, with the group whose
    blend line passes nearest; pixels that are mostly backdrop are left out. This keeps thin
    parts (a strap, a stripe) at their share of the area."""
    if not groups or not len(rgb):
        return
    pixels = rgb.astype(np.float32) - backdrop.astype(np.float32)
    toward = np.array([g.mean_rgb for g in groups], dtype=np.float32) - backdrop
    length = np.maximum((toward * toward).sum(1), 1e-6)
    amount = np.clip(pixels @ toward.T / length, 0, 1)  # (pixels, groups): the garment's part
    residual = ((pixels[:, None, :] - amount[..., None] * toward[None]) ** 2).sum(-1)
    best = residual.argmin(1)
    mostly_garment = amount[np.arange(len(best)), best] >= 0.5
    for group, extra in zip(
        groups, np.bincount(best[mostly_garment], minlength=len(groups)), strict=True
    ):
        group.count += int(extra)


@dataclass
class _Group:
    name: str
    count: float  # all pixels, edges included (blends split by area)
    clean: int  # pixels away from edges, which the sums are over
    lab_sum: np.ndarray
    rgb_sum: np.ndarray
    lit_l: float  # CIELAB L of the group's lit part (its LIT_PERCENTILE)
    parts: list[int] = field(default_factory=list)  # its groups among `_colour_groups`' labels

    @property
    def mean_rgb(self) -> np.ndarray:
        """The mean RGB of its pixels away from edges."""
        return self.rgb_sum / self.clean
