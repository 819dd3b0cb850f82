"""The demo catalog: shipped subset, and the full set checked by SHA-256."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from stylefinder.catalog.demo import (
    CLASS_NAMES,
    DEBIAN_DIR,
    load_demo_arrays,
    load_fashion_mnist,
    write_demo_catalog,
)
from stylefinder.errors import StylefinderError

needs_debian = pytest.mark.skipif(
    not (DEBIAN_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed (make setup installs it)",
)


def test_shipped_subset_is_balanced():
    arrays = load_demo_arrays()
    assert arrays["images"].shape == (1000, 28, 28) and arrays["images"].dtype == np.uint8
    assert np.bincount(arrays["labels"], minlength=10).tolist() == [100] * 10
    assert len(set(arrays["source_index"].tolist())) == 1000


@needs_debian
def test_shipped_subset_is_real_fashion_mnist():
    images, labels = load_fashion_mnist("test")
    arrays = load_demo_arrays()
    assert images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(images[arrays["source_index"]], arrays["images"])
    np.testing.assert_array_equal(labels[arrays["source_index"]], arrays["labels"])


@needs_debian
def test_a_tampered_file_is_refused(tmp_path: Path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(DEBIAN_DIR / name, tmp_path / name)
    raw = bytearray(gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(StylefinderError, match="does not match the official file"):
        load_fashion_mnist("test", source=tmp_path)


def test_rewriting_the_demo_leaves_files_untouched(tmp_path: Path):
    first = write_demo_catalog(tmp_path / "d")
    path = sorted((tmp_path / "d" / "images").glob("*.png"))[0]
    mtime = path.stat().st_mtime_ns
    second = write_demo_catalog(tmp_path / "d")
    assert first.count == second.count == 1000 and path.stat().st_mtime_ns == mtime
    rows = (tmp_path / "d" / "catalog.csv").read_text().splitlines()[1:]
    assert {row.rsplit(",", 1)[1] for row in rows} == set(CLASS_NAMES)


@needs_debian
@pytest.mark.slow
def test_full_catalog(tmp_path: Path):
    demo = write_demo_catalog(tmp_path / "full")
    assert demo.count == 1000
    full = write_demo_catalog(tmp_path / "full70k", full=True)
    assert full.count == 70000
