"""Fixtures for the HTTP API: a private copy of the demo index and a TestClient factory."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from fakes import FAKE_BACKBONE, FakeEmbedder
from stylefinder.engine import Engine
from stylefinder.index.store import IndexStore
from stylefinder.serve.api import create_app
from stylefinder.serve.settings import ServerSettings

ADMIN = "admin-secret"
READER = "reader-secret"


@pytest.fixture
def api_index(fake_demo_index, tmp_path):
    """A copy of the demo index (embedded by `FakeEmbedder`) that a test may write to."""
    source, _ = fake_demo_index
    target = tmp_path / "index"
    shutil.copytree(source, target)
    return target


@pytest.fixture(scope="session")
def recognized_index(demo, embedder, tmp_path_factory) -> Path:
    """A 60-item index (6 of each demo class) whose items all have `colours` and an ImageNet
    `category_pred`, written by `annotate_index`. Shared by the session: do not write to it."""
    from stylefinder.jobs.annotate import annotate_index
    from stylefinder.jobs.build import build_index

    root = tmp_path_factory.mktemp("recognized")
    catalog = root / "catalog"
    (catalog / "images").mkdir(parents=True)
    with demo.csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kept: dict[str, list[dict]] = {}
    for row in rows:
        if len(kept.setdefault(row["category"], [])) < 6:
            kept[row["category"]].append(row)
    chosen = [row for group in kept.values() for row in group]
    for row in chosen:
        shutil.copy2(demo.root / row["path"], catalog / row["path"])
    with (catalog / "catalog.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    index_dir = root / "index"
    build_index(catalog, index_dir, metadata_csv=catalog / "catalog.csv", embedder=embedder)
    annotate_index(index_dir, imagenet=True)
    return index_dir


@pytest.fixture
def make_client(api_index, request) -> Callable[..., TestClient]:
    """make(index_dir=None, **ServerSettings fields): a started TestClient (the admin key is
    ADMIN unless given); `index_dir` defaults to the test's private copy of the demo index.
    An index of the fake backbone gets `FakeEmbedder`, any other the session's real model."""
    clients = []

    def make(index_dir: Path | None = None, **settings) -> TestClient:
        settings.setdefault("admin_key", ADMIN)
        store = IndexStore.open(index_dir or api_index)
        fake = store.header.backbone == FAKE_BACKBONE
        embedder = FakeEmbedder() if fake else request.getfixturevalue("embedder")
        engine = Engine(store, embedder=embedder)
        index_dir = store.directory
        app = create_app(ServerSettings(index_dir=str(index_dir), **settings), engine=engine)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def png(colour=(200, 30, 30), size=(40, 60), shape: str = "square") -> bytes:
    """A small garment-free test picture: a coloured shape on white."""
    image = Image.new("RGB", size, "white")
    if shape == "square":
        image.paste(colour, (8, 8, size[0] - 8, size[1] - 8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
