"""Decoding: every colour mode becomes upright RGB; every kind of bad file gets a clear error."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagefactory import bomb_png
from stylefinder.catalog.images import load_image
from stylefinder.errors import BadImageError, ImageTooLargeError


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "mode, colour",
    [
        ("RGB", (200, 10, 10)),
        ("L", 128),
        ("P", 5),
        ("RGBA", (0, 0, 255, 255)),
        ("CMYK", (0, 255, 255, 0)),
    ],
)
def test_colour_modes_become_rgb(mode, colour):
    image = Image.new(mode, (20, 10), colour)
    data = _jpeg_bytes(image) if mode == "CMYK" else _png_bytes(image)
    decoded = load_image(data)
    assert decoded.mode == "RGB"
    assert decoded.size == (20, 10)


def test_cmyk_red_stays_red():
    decoded = load_image(_jpeg_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0))))
    r, g, b = np.asarray(decoded)[4, 4]
    assert r > 200 and g < 60 and b < 60


def test_transparent_background_becomes_white():
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image.putpixel((5, 5), (255, 0, 0, 255))
    pixels = np.asarray(load_image(_png_bytes(image)))
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[5, 5]) == (255, 0, 0)


def test_sixteen_bit_greyscale_keeps_its_range():
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    decoded = np.asarray(load_image(_png_bytes(Image.fromarray(ramp))))
    assert decoded[0, 0, 0] == 0 and decoded[-1, -1, 0] == 255
    assert 100 < decoded[4, 0, 0] < 160  # mid-grey, not clipped to white


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    decoded = load_image(_jpeg_bytes(image, exif=exif.tobytes()))
    assert decoded.size == (20, 40)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP"])
def test_other_formats(fmt, tmp_path: Path):
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (16, 12), (0, 128, 0)).save(path, format=fmt)
    decoded = load_image(path)
    assert decoded.size == (16, 12)
    assert np.asarray(decoded)[6, 8, 1] > 100


def test_jpeg_draft_decodes_large_photos_smaller():
    big = _jpeg_bytes(Image.new("RGB", (2000, 1600), (10, 20, 30)))
    decoded = load_image(big, draft_size=224)
    assert 224 <= min(decoded.size) < 1600


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not an image"),
        (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "not an image"),  # JPEG magic, garbage
    ],
)
def test_bad_bytes(data, message):
    with pytest.raises(BadImageError, match=message):
        load_image(data)


def test_truncated_file(tmp_path: Path):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = _jpeg_bytes(Image.fromarray(noise))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match=r"cut\.jpg"):
        load_image(path)


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(bomb_png(30_000, 30_000))
    with pytest.raises(BadImageError, match="over the"):
        load_image(_png_bytes(Image.new("L", (100, 100))), max_pixels=5_000)


@pytest.mark.parametrize(
    "width, height, max_pixels, message",
    [
        (100, 100, 5_000, r"100x100 pixels is 0\.01 megapixels, over the 0\.005 MP limit"),
        (10_000, 5_210, 40_000_000, r"52\.1 megapixels, over the 40 MP limit"),
        # over Pillow's own guard (89.5 MP, which refuses at 179 MP): still the caller's limit
        (30_000, 30_000, 1_000_000, r"900 megapixels, over the 1 MP limit"),
        # the caller allows more than Pillow's hard limit: that one applied, so it is quoted
        (30_000, 30_000, 1_000_000_000, r"900 megapixels, over the 179 MP limit"),
    ],
)
def test_too_large_message_quotes_the_limit_applied(width, height, max_pixels, message):
    with pytest.raises(ImageTooLargeError, match=message) as caught:
        load_image(bomb_png(width, height), max_pixels=max_pixels)
    assert "decompression bomb" in str(caught.value) and "max_pixels" in str(caught.value)


def test_max_pixels_is_the_limit_not_pillows(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow warns at 1,000, fails at 2,000
    image = _png_bytes(Image.new("L", (40, 40)))  # 1,600 pixels: only Pillow's warning
    assert load_image(image, max_pixels=5_000).size == (40, 40)
    with pytest.raises(ImageTooLargeError, match=r"0\.01 megapixels, over the 0\.002 MP limit"):
        load_image(_png_bytes(Image.new("L", (100, 100))), max_pixels=5_000)


def test_missing_file_and_folder(tmp_path: Path):
    with pytest.raises(BadImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(BadImageError, match="directory"):
        load_image(tmp_path)


def test_unsupported_format_is_refused():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="ICO")
    with pytest.raises(BadImageError, match="unsupported image format ICO"):
        load_image(buffer.getvalue())
