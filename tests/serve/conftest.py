"""Fixtures for the HTTP API: a private copy of the demo index and a TestClient factory."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable

import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from stylefinder.index.store import IndexStore
from stylefinder.recommend.engine import Engine
from stylefinder.serve.api import ServerSettings, create_app

ADMIN = "admin-secret"
READER = "reader-secret"


@pytest.fixture
def api_index(demo_index, tmp_path):
    """A copy of the demo index that a test may write to."""
    source, _ = demo_index
    target = tmp_path / "index"
    shutil.copytree(source, target)
    return target


@pytest.fixture
def make_client(api_index, embedder) -> Callable[..., TestClient]:
    clients = []

    def make(**settings) -> TestClient:
        settings.setdefault("admin_key", ADMIN)
        engine = Engine(IndexStore.open(api_index), embedder=embedder)
        app = create_app(ServerSettings(index_dir=str(api_index), **settings), engine=engine)
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
