"""Fixtures of the web app's tests: copies of the demo index, so that the shoppers' events the
app records (and the classifier tuned for the same-category toggle) stay out of the shared one.
The browser test runs the real model in a server process (`app_index`); the AppTest wiring tests
run in this process on the demo catalog embedded by `FakeEmbedder` (`fake_app_index`, with the
`fake_index` fixture making `Engine` open the fake)."""

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
def fake_app_index(fake_demo_index, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo index embedded by `FakeEmbedder`, for one test module."""
    source, _ = fake_demo_index
    target = tmp_path_factory.mktemp("fake-app-index") / "index"
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="module")
def fake_tuned_index(fake_demo_index, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the fake demo index with a classifier tuned on its `category` labels."""
    from stylefinder.jobs.tune import tune_index

    source, _ = fake_demo_index
    target = tmp_path_factory.mktemp("fake-tuned-index") / "index"
    shutil.copytree(source, target)
    tune_index(target, label_column="category", epochs=2)
    return target
