"""Fixtures of the shoppers' tests: a tiny index whose items events may name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from event_store_contract import ITEMS

from stylefinder.index.store import IndexStore
from stylefinder.types import EmbeddingSpace, Item

SPACE = EmbeddingSpace("test", "gem", "none", 4)


def tiny_index(directory: Path, ids: list[str] = ITEMS) -> IndexStore:
    store = IndexStore.create(directory, SPACE)
    rng = np.random.default_rng(0)
    with store.writer() as writer:
        for n, item_id in enumerate(ids):
            vector = rng.standard_normal(4).astype(np.float32)
            vector /= np.linalg.norm(vector)
            writer.put(Item(item_id, f"{item_id}.png", f"{n:064x}"), vector)
    return store


@pytest.fixture
def index(tmp_path: Path) -> IndexStore:
    """A six-item index (ITEMS) in a folder of the test's own."""
    return tiny_index(tmp_path / "index")
