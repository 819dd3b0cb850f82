"""White balance from the scene, before colours are named.

A product photo's plain backdrop is white or light grey paper: whatever tint it has in the photo
is the light's (a warm tungsten, a cool shade), so dividing the light out of every pixel, in
linear light, by the backdrop's tint (a von Kries correction) gives the garment's colour under
neutral light. Where there is no plain backdrop, the brightest near-neutral pixels of the
photo stand in for it (the "white patch" of colour constancy); a backdrop or patch that is dark
or strongly coloured is taken as a coloured backdrop, not a tint of the light, and nothing is
corrected.

Example:
    >>> warm = np.array([[[250, 228, 196]]], dtype=np.uint8)  # white paper in warm light
    >>> gains = light_gains(np.array([250.0, 228.0, 196.0]))
    >>> balanced(warm, gains)[0, 0].tolist()
    [229, 229, 229]
"""

from __future__ import annotations

import numpy as np

#: A reference lighter than this (CIELAB L) and less coloured than MAX_TINT (CIELAB chroma) is
#: white or grey paper in tinted light.
MIN_REFERENCE_L = 45.0
MAX_TINT = 28.0
#: The share of the brightest pixels that stand in for a backdrop where there is none.
PATCH_SHARE = 0.03
#: Gains this close to 1 are left alone (the light is neutral already).
NEUTRAL_GAIN = 0.015


def light_gains(reference_rgb: np.ndarray) -> np.ndarray | None:
    """Per-channel gains in linear light that make `reference_rgb` (sRGB 0..255, a neutral
    surface in the photo) grey of the same luminance; None when it is neutral already.

    Example:
        >>> light_gains(np.array([200.0, 200.0, 200.0])) is None
        True
    """
    linear = linear_light(reference_rgb)
    luminance = float(linear @ np.array([0.2126, 0.7152, 0.0722]))
    gains = luminance / np.maximum(linear, 1e-6)
    if np.abs(gains - 1).max() < NEUTRAL_GAIN:
        return None
    return gains


def reference_colour(
    rgb: np.ndarray,
    lab: np.ndarray,
    backdrop_rgb: np.ndarray | None,
    backdrop_lab: np.ndarray | None = None,
) -> np.ndarray | None:
    """The photo's neutral reference as sRGB: the plain backdrop when there is one, else the
    mean of the brightest PATCH_SHARE of pixels; None when it is too dark or too coloured to
    be a tint of the light. `lab` is the CIELAB of `rgb`, `backdrop_lab` the backdrop's.

    Example:
        >>> pixels = np.full((4, 4, 3), (90, 20, 20), dtype=np.uint8)  # all red, no backdrop
        >>> lab = np.broadcast_to(np.array([33.0, 40.0, 24.0]), (4, 4, 3))
        >>> reference_colour(pixels, lab, None) is None
        True
    """
    if backdrop_rgb is not None and backdrop_lab is not None:
        reference = np.asarray(backdrop_rgb, np.float64)
        point = np.asarray(backdrop_lab, np.float64)
    else:
        lightness = lab[..., 0].ravel()
        count = max(1, int(PATCH_SHARE * lightness.size))
        brightest = np.argpartition(-lightness, count - 1)[:count]
        reference = rgb.reshape(-1, 3)[brightest].astype(np.float64).mean(0)
        point = lab.reshape(-1, 3)[brightest].mean(0)
    if point[0] < MIN_REFERENCE_L or float(np.hypot(point[1], point[2])) > MAX_TINT:
        return None
    return reference


def balanced(rgb: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """uint8 sRGB pixels with `gains` applied in linear light (clipped at white).

    Example:
        >>> balanced(np.array([[[255, 255, 255]]], np.uint8), np.array([1.0, 1.0, 0.5]))
        array([[[255, 255, 186]]], dtype=uint8)
    """
    table = _encoded_tables(tuple(float(g) for g in gains))
    out = np.empty_like(rgb)
    for channel in range(3):
        out[..., channel] = table[channel][rgb[..., channel]]
    return out


def _encoded_tables(gains: tuple[float, float, float]) -> list[np.ndarray]:
    """Per channel, the 256-entry table of each sRGB level times its gain, back in sRGB."""
    levels = linear_light(np.arange(256, dtype=np.float64))
    return [np.rint(srgb_of(levels * gain)).astype(np.uint8) for gain in gains]


def linear_light(srgb: np.ndarray) -> np.ndarray:
    """Linear-light RGB (0..1, float64) of sRGB values 0..255.

    Example:
        >>> linear_light(np.array([0.0, 255.0])).tolist()
        [0.0, 1.0]
    """
    c = np.clip(np.asarray(srgb, np.float64) / 255.0, 0, 1)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def srgb_of(linear: np.ndarray) -> np.ndarray:
    """sRGB values 0..255 (float) of linear-light RGB, clipped to 0..1 first.

    Example:
        >>> srgb_of(np.array([0.0, 1.0, 2.0])).tolist()
        [0.0, 255.0, 255.0]
    """
    c = np.clip(np.asarray(linear, np.float64), 0, 1)
    return 255 * np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)
