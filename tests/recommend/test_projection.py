"""The learned projection: it helps on labeled data, round-trips, and tuned indexes use it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from stylefinder import Engine
from stylefinder.cli import main
from stylefinder.evaluate.metrics import precision_at_k
from stylefinder.index.search import top_k
from stylefinder.jobs.tune import reset_projection
from stylefinder.recommend.projection import (
    TUNED_FOLDER,
    Projection,
    fit_mlp_projection,
    fit_projection,
)


def synthetic_catalog(n_per_class: int = 60, seed: int = 0):
    """Labels live in 4 weak directions; 60 other directions carry strong label-free noise."""
    classes = 5
    centres = np.random.default_rng(123).normal(size=(classes, 4))  # the same for every seed
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    signal = centres[labels] + rng.normal(scale=0.3, size=(len(labels), 4))
    noise = rng.normal(scale=1.5, size=(len(labels), 60))
    vectors = np.hstack([signal, noise]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, labels.astype(str)


def test_tuning_improves_a_synthetic_labeled_catalog():
    train_x, train_y = synthetic_catalog(seed=1)
    test_x, test_y = synthetic_catalog(seed=2)
    projection = fit_projection(train_x, train_y, dim=32)
    raw = precision_at_k(test_x, test_y, k=5)
    tuned = precision_at_k(projection.apply(test_x), test_y, k=5)
    assert tuned > raw + 0.2, (raw, tuned)
    assert projection.apply(test_x).shape == (len(test_x), 32)
    np.testing.assert_allclose(np.linalg.norm(projection.apply(test_x), axis=1), 1, rtol=1e-5)


def test_mlp_tuning_improves_retrieval_and_classifies():
    train_x, train_y = synthetic_catalog(seed=1)
    test_x, test_y = synthetic_catalog(seed=2)
    projection = fit_mlp_projection(
        train_x, train_y, dim=16, epochs=30, raw_weight=0, hidden_weight=0, members=1
    )
    raw = precision_at_k(test_x, test_y, k=5)
    tuned = precision_at_k(projection.apply(test_x), test_y, k=5)
    assert tuned > raw + 0.3, (raw, tuned)
    assert projection.apply(test_x).shape == (len(test_x), 16)
    blended = fit_mlp_projection(train_x, train_y, dim=16, epochs=8)  # raw and hidden blends
    # 3 networks' outputs and hidden activations, and the components
    assert blended.apply(test_x).shape == (len(test_x), 3 * 16 + 3 * 512 + 64)
    assert precision_at_k(blended.apply(test_x), test_y, k=5) > raw + 0.1
    probabilities = projection.probabilities(test_x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    predicted = np.array(projection.classifier.labels)[probabilities.argmax(axis=1)]
    assert (predicted == test_y).mean() > 0.8  # chance: 0.2
    assert projection.info["method"] == "mlp" and projection.info["labels"] == 5


def test_mlp_round_trip(tmp_path):
    x, y = synthetic_catalog()
    projection = fit_mlp_projection(x, y, dim=8, components=16, epochs=2)
    projection.save(tmp_path)
    loaded = Projection.load(tmp_path)
    assert loaded.dim == projection.dim == 3 * 8 + 3 * 512 + 16 and len(loaded.extra) == 2
    # the members read one copy of the shared components, computed once per apply
    assert all(network.shares_components(loaded) for network in loaded.extra)
    assert loaded.raw_weight == projection.raw_weight
    assert loaded.classifier.labels == projection.classifier.labels
    assert loaded.classifier.temperature == projection.classifier.temperature
    np.testing.assert_allclose(loaded.apply(x[:5]), projection.apply(x[:5]), rtol=1e-6)
    np.testing.assert_allclose(loaded.probabilities(x[:5]), projection.probabilities(x[:5]))
    with pytest.raises(ValueError, match="no classifier"):
        fit_projection(x, y, dim=4).probabilities(x[:1])


def test_mlp_hidden_blend_round_trip(tmp_path):
    x, y = synthetic_catalog()
    projection = fit_mlp_projection(
        x, y, dim=8, components=16, hidden=32, epochs=2, members=2, hidden_weight=0.3
    )
    assert projection.dim == 2 * 8 + 2 * 32 + 16 and projection.info["hidden_weight"] == 0.3
    projection.save(tmp_path)
    loaded = Projection.load(tmp_path)
    assert loaded.hidden_weight == 0.3 and loaded.dim == projection.dim
    np.testing.assert_allclose(loaded.apply(x[:5]), projection.apply(x[:5]), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(loaded.apply(x[:5]), axis=1), 1, rtol=1e-5)
    # the blended activations are each network's, before the ReLU, centred on the training mean
    networks = [loaded, *loaded.extra]
    assert all(n.hidden_before_relu for n in networks)

    def unit(rows: np.ndarray) -> np.ndarray:
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    activations = np.hstack(
        [
            unit(((x[:5] - n.mean) @ n.matrix) @ n.layers[0][0] + n.layers[0][1] - n.hidden_mean)
            for n in networks
        ]
    )
    expected = np.sqrt(0.3) * unit(activations)
    np.testing.assert_allclose(loaded.apply(x[:5])[:, 16 : 16 + 64], expected, atol=1e-5)
    # files written before that option took them after the ReLU, and still do
    with np.load(tmp_path / "projection.npz") as data:
        arrays = {k: data[k] for k in data.files if k != "hidden_before_relu"}
    np.savez(tmp_path / "projection.npz", **arrays)
    older = Projection.load(tmp_path)
    assert not any(n.hidden_before_relu for n in [older, *older.extra])
    assert not np.allclose(older.apply(x[:5]), loaded.apply(x[:5]), atol=1e-3)
    with pytest.raises(ValueError, match="sum below 1"):
        fit_mlp_projection(x, y, raw_weight=0.5, hidden_weight=0.5)


def test_round_trip(tmp_path):
    x, y = synthetic_catalog()
    projection = fit_projection(x, y, dim=16)
    projection.info["note"] = "kept"
    projection.save(tmp_path)
    loaded = Projection.load(tmp_path)
    np.testing.assert_array_equal(loaded.matrix, projection.matrix)
    np.testing.assert_array_equal(loaded.mean, projection.mean)
    assert loaded.info["note"] == "kept" and loaded.info["labels"] == 5
    np.testing.assert_allclose(loaded.apply(x[:3]), projection.apply(x[:3]))
    assert Projection.load(tmp_path / "elsewhere") is None
    with pytest.raises(ValueError, match="two different labels"):
        fit_projection(x, ["same"] * len(x))


def test_queries_on_a_tuned_index_use_the_projection(demo_index, tmp_path, capsys):
    source, _ = demo_index
    index_dir = tmp_path / "ix"
    shutil.copytree(source, index_dir)
    engine = Engine.open(index_dir)
    item = engine.snapshot.items[42].id
    raw_ids = [r.id for r in engine.similar(item, k=10)]
    assert engine.projection is None

    tune = ["tune", "--index", str(index_dir), "--label-column", "category"]
    assert main([*tune, "--method", "linear", "--dim", "64"]) == 0
    assert "64-d linear projection from 1,000 items" in capsys.readouterr().out
    assert engine.reload()  # tuning commits, so running engines pick it up
    projection = engine.projection
    assert projection is not None and projection.dim == 64
    space = sorted(p.name.split("-")[0] for p in (index_dir / TUNED_FOLDER).iterdir())
    assert space == ["matrix", "rows", "stage"]  # written by tune: queries only read it
    snap = engine.snapshot
    matrix = projection.apply(snap.vectors)
    exclude = np.zeros(len(snap), bool)
    exclude[snap.row_of[item]] = True
    rows, _ = top_k(matrix, matrix[snap.row_of[item]], 10, exclude=exclude)
    tuned_ids = [r.id for r in engine.similar(item, k=10)]
    assert tuned_ids == [snap.items[r].id for r in rows] and tuned_ids != raw_ids
    reopened = Engine.open(index_dir)
    assert [r.id for r in reopened.similar(item, k=10)] == tuned_ids

    assert reset_projection(index_dir) and engine.reload()
    assert engine.projection is None and not (index_dir / TUNED_FOLDER).exists()
    assert [r.id for r in engine.similar(item, k=10)] == raw_ids


def test_default_tuning_trains_a_classifier_and_eval_measures_the_tuned_space(
    demo_index, tmp_path, capsys
):
    source, _ = demo_index
    index_dir = tmp_path / "ix"
    shutil.copytree(source, index_dir)
    args = ["--index", str(index_dir), "--label-column", "category"]
    assert main(["eval", *args, "--json"]) == 0
    raw = json.loads(capsys.readouterr().out)["metrics"]["precision@5"]
    assert main(["tune", *args, "--epochs", "5"]) == 0
    out = capsys.readouterr().out
    assert "mlp projection from" in out and "classifier accuracy" in out
    projection = Engine.open(index_dir).projection
    assert projection.classifier is not None and len(projection.classifier.labels) == 10
    assert main(["eval", *args, "--json"]) == 0
    tuned = json.loads(capsys.readouterr().out)["metrics"]["precision@5"]
    assert main(["eval", *args, "--json", "--raw"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["precision@5"] == raw
    assert tuned > raw + 0.05, (raw, tuned)  # fitted on these very items: an optimistic check


def test_mlp_on_fewer_items_than_dimensions_uses_only_the_directions_they_span():
    train_x, train_y = synthetic_catalog(n_per_class=8, seed=1)  # 40 items in 64 dimensions
    projection = fit_mlp_projection(train_x, train_y, dim=8, epochs=20, members=1)
    assert projection.matrix.shape[1] <= 39  # 40 centred items span at most 39 directions
    test_x, test_y = synthetic_catalog(seed=2)
    tuned = projection.apply(test_x)
    assert np.isfinite(tuned).all()
    predicted = np.array(projection.classifier.labels)[projection.probabilities(test_x).argmax(1)]
    # chance is 0.2; keeping the direction the items do not span (standardized by ~0) gave 0.21
    assert (predicted == test_y).mean() > 0.28
