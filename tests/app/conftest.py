"""Fixtures of the web app's tests: copies of the demo index, so that the shoppers' events the
app records (and the classifier tuned for the same-category toggle) stay out of the shared one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def app_index(demo_index, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo index for one test module."""
    source, _ = demo_index
    target = tmp_path_factory.mktemp("app-index") / "index"
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="module")
def tuned_index(demo_index, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo index with a classifier tuned on its `category` labels (2 epochs)."""
    from stylefinder.jobs.tune import tune_index

    source, _ = demo_index
    target = tmp_path_factory.mktemp("tuned-index") / "index"
    shutil.copytree(source, target)
    tune_index(target, label_column="category", epochs=2)
    return target
