"""The built-in demo catalog: labeled Fashion-MNIST garments written as PNG files plus a CSV.

The package ships a balanced 1,000-image subset of the Fashion-MNIST test set (MIT licence,
100 images per class) and one held-out query image per class from the training set, so the demo
and the tests need nothing else. `full=True` writes all 70,000 images from the Debian package
`dataset-fashion-mnist` or, with internet, from the official download, checked by SHA-256.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from stylefinder.errors import StylefinderError

#: Fashion-MNIST's ten classes, in label order.
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
#: SHA-256 of the official files (identical in the Debian package and the official download).
SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"
    ),
    "train-labels-idx1-ubyte.gz": (
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"
    ),
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}


@dataclass(frozen=True)
class DemoCatalog:
    """Where `write_demo_catalog` put things."""

    root: Path
    csv_path: Path
    count: int
    queries: list[tuple[Path, str]]  # held-out query images (not in the catalog), category


def load_demo_arrays() -> dict[str, np.ndarray]:
    """The shipped 1,000-image subset as arrays: images (N,28,28) uint8, labels, source_index.

    Example:
        >>> arrays = load_demo_arrays()
        >>> arrays["images"].shape
        (1000, 28, 28)
    """
    data = resources.files("stylefinder.data").joinpath("fashion_mnist_demo.npz")
    with data.open("rb") as f, np.load(f) as npz:
        return {key: npz[key] for key in npz.files}


def load_fashion_mnist(split: str, source: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Full Fashion-MNIST `split` ("train" or "test") as (images, labels), verified by SHA-256.

    Reads the Debian package's files, or `source` if given, else downloads the official files.

    Example:
        >>> images, labels = load_fashion_mnist("test")  # doctest: +SKIP
        >>> images.shape
        (10000, 28, 28)
    """
    prefix = {"train": "train", "test": "t10k"}[split]
    images = _read_idx(f"{prefix}-images-idx3-ubyte.gz", source, offset=16)
    labels = _read_idx(f"{prefix}-labels-idx1-ubyte.gz", source, offset=8)
    return images.reshape(-1, 28, 28), labels


def write_demo_catalog(
    directory: str | Path, *, full: bool = False, queries_dir: str | Path | None = None
) -> DemoCatalog:
    """Write the demo catalog: `images/*.png` and `catalog.csv` (id,path,category).

    With `queries_dir`, also write held-out query photos there (three per class, from the
    training set, so they are not in the 1,000-image catalog; named `<category>-<n>.png`).

    Product photos show a garment on a light background, so the grey Fashion-MNIST images are
    written inverted (dark garment on white). Existing identical files are left untouched, so a
    re-run does not change modification times.

    Example:
        >>> demo = write_demo_catalog("/tmp/demo")  # doctest: +SKIP
        >>> demo.count
        1000
    """
    root = Path(directory)
    if full:
        test_images, test_labels = load_fashion_mnist("test")
        train_images, train_labels = load_fashion_mnist("train")
        parts = [
            ("test", test_images, test_labels, np.arange(len(test_images))),
            ("train", train_images, train_labels, np.arange(len(train_images))),
        ]
    else:
        arrays = load_demo_arrays()
        parts = [("test", arrays["images"], arrays["labels"], arrays["source_index"])]
    rows = []
    for split, images, labels, indices in parts:
        for image, label, index in zip(images, labels, indices, strict=True):
            item_id = f"fmnist-{split}-{int(index):05d}"
            relative = f"images/{item_id}.png"
            _write_png(root / relative, image)
            rows.append((item_id, relative, CLASS_NAMES[int(label)]))
    csv_path = root / "catalog.csv"
    _write_csv(csv_path, rows)
    queries = write_demo_queries(queries_dir) if queries_dir is not None else []
    return DemoCatalog(root=root, csv_path=csv_path, count=len(rows), queries=queries)


def write_demo_queries(directory: str | Path) -> list[tuple[Path, str]]:
    """Write the shipped held-out query images; returns (path, category) pairs."""
    arrays = load_demo_arrays()
    written, counts = [], {}
    for image, label in zip(arrays["query_images"], arrays["query_labels"], strict=True):
        name = CLASS_NAMES[int(label)]
        counts[name] = counts.get(name, 0) + 1
        slug = name.replace("/", "-").replace(" ", "-").lower()
        path = Path(directory) / f"{slug}-{counts[name]}.png"
        _write_png(path, image)
        written.append((path, name))
    return written


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (255 - image).astype(np.uint8)  # dark garment on a white background
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(pixels, "L").save(tmp, format="PNG")
    if path.exists() and path.read_bytes() == tmp.read_bytes():
        tmp.unlink()
    else:
        os.replace(tmp, path)


def _write_csv(path: Path, rows: list[tuple[str, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "path", "category"])
        writer.writerows(rows)
    os.replace(tmp, path)


def _read_idx(name: str, source: Path | None, offset: int) -> np.ndarray:
    data = _fetch(name, source)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256[name]:
        raise StylefinderError(f"{name}: SHA-256 {digest} does not match the official file")
    return np.frombuffer(gzip.decompress(data), dtype=np.uint8, offset=offset)


def _fetch(name: str, source: Path | None) -> bytes:
    for folder in [source, DEBIAN_DIR] if source else [DEBIAN_DIR]:
        if (folder / name).is_file():
            return (folder / name).read_bytes()
    try:
        with urllib.request.urlopen(OFFICIAL_URL + name, timeout=60) as response:
            return response.read()
    except OSError as exc:
        raise StylefinderError(
            f"Fashion-MNIST file {name} not found in {DEBIAN_DIR} and the download failed "
            f"({exc}). Install the Debian package: apt-get install dataset-fashion-mnist"
        ) from exc
