"""The personalization evaluation on a small synthetic labeled catalog (fast; the real-data run
is benchmarks/personalization.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stylefinder.evaluate.personalization import evaluate_personalization
from stylefinder.evaluate.simulated_shoppers import simulate_shoppers
from stylefinder.index.store import IndexStore
from stylefinder.types import EmbeddingSpace, Item

CLASSES = ["Dress", "Coat", "Bag", "Sneaker", "Shirt", "Sandal"]


def clustered(per_class: int = 40, dim: int = 16, noise: float = 0.35, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(CLASSES), dim))
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    vectors = centres[labels] + noise * rng.standard_normal((len(labels), dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), [CLASSES[i] for i in labels]


@pytest.fixture(scope="module")
def labeled_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vectors, labels = clustered()
    directory = tmp_path_factory.mktemp("personal") / "index"
    store = IndexStore.create(directory, EmbeddingSpace("test", "gem", "none", vectors.shape[1]))
    with store.writer() as writer:
        for n, (vector, label) in enumerate(zip(vectors, labels, strict=True)):
            item = Item(f"i{n:03d}", f"{n}.png", f"{n:064x}", metadata={"category": label})
            writer.put(item, vector)
        writer.put(Item("unlabeled", "u.png", "e" * 64), vectors[0])
    return directory


def test_simulated_shoppers_follow_their_tastes():
    vectors, labels = clustered()
    ids = [f"i{n}" for n in range(len(labels))]
    shoppers = simulate_shoppers(vectors, labels, ids, users=40, seed=3)
    assert {len(s.preferred) for s in shoppers} == {1, 2}
    row_of = {item: row for row, item in enumerate(ids)}
    for shopper in shoppers:
        likes = [row_of[e.item_id] for e in shopper.events if e.kind == "like"]
        dislikes = [row_of[e.item_id] for e in shopper.events if e.kind == "dislike"]
        assert 8 <= len(likes) + len(shopper.held_out) <= 12 and len(dislikes) == 3
        assert all(labels[r] in shopper.preferred for r in [*likes, *shopper.held_out])
        assert all(labels[r] not in shopper.preferred for r in dislikes)
        assert not set(shopper.held_out) & set(likes)
        latest = max(e.timestamp for e in shopper.events if e.kind == "like")
        assert (
            shopper.last_liked
            == row_of[next(e.item_id for e in shopper.events if e.timestamp == latest)]
        )


def test_evaluation_report(labeled_index: Path, tmp_path: Path, report):
    result = evaluate_personalization(
        labeled_index, "category", users=40, sweep=(0.0, 0.3, 0.9), report_dir=tmp_path
    )
    methods = result["methods"]
    assert set(methods) == {
        "stylefinder",
        "random",
        "most popular",
        "nearest to last like",
        "mean of likes",
    }
    ours, popular = methods["stylefinder"], methods["most popular"]
    report("synthetic personalization precision@10", f"{ours['precision@10']:.3f}")
    assert ours["precision@10"] >= 0.9 and ours["precision@10"] >= 3 * popular["precision@10"]
    assert 0 < ours["intra_list_diversity"] < 2 and 0 < ours["coverage"] <= 1
    sweep = result["sweep"]
    assert [row["diversity_weight"] for row in sweep] == [0.0, 0.3, 0.9]
    assert sweep[-1]["intra_list_diversity"] > sweep[0]["intra_list_diversity"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["command"] and saved["machine"] and saved["versions"]["stylefinder"]
    assert saved["methods"] == json.loads(json.dumps(methods))
    assert "| stylefinder |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "accuracy_vs_diversity.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="'colour'"):
        evaluate_personalization(labeled_index, "colour", users=2)
