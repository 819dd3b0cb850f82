"""Two-stage search (PCA or int8 codes, then exact rerank) returns what exact search returns,
honours exclusion masks, and is built, reused, calibrated and cleaned by commits."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from stylefinder.index import quantized
from stylefinder.index.coarse import (
    CoarseSettings,
    build_first_stage,
    calibrate,
    encode,
    fit_basis,
)
from stylefinder.index.quantized import quantize
from stylefinder.index.search import CoarseIndex, QuantizedIndex, top_k
from stylefinder.index.store import MANIFEST_FILE, IndexStore
from stylefinder.recommend import engine as engine_module
from stylefinder.recommend import tuned_space as tuned_space_module
from stylefinder.recommend.engine import Engine
from stylefinder.recommend.projection import fit_projection
from stylefinder.recommend.tuned_space import tuned_space
from stylefinder.types import EmbeddingSpace, Item

DIM = 64
SPACE = EmbeddingSpace("test-net", "gem", "abc123", DIM)
# small enough that a few thousand rows take the two-stage path
SETTINGS = CoarseSettings(min_rows=1000, dim=16, queries=100, pools=(20, 50, 100, 200, 400))


def clustered(n: int, *, clusters: int = 60, seed: int = 0) -> np.ndarray:
    """Unit vectors around fixed cluster centres, with a decaying spectrum like CNN embeddings;
    `seed` draws other vectors from the same distribution."""
    scale = np.arange(1, DIM + 1) ** -1.0  # variance decays as 1 / i**2
    centres = np.random.default_rng(0).normal(size=(clusters, DIM)) * scale
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    x = 0.8 + centres[labels] + 0.6 * rng.normal(size=(n, DIM)) * scale
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, CoarseIndex]:
    vectors = clustered(4000)
    mean, basis = fit_basis(vectors, 16)
    coarse = CoarseIndex(mean, basis, encode(vectors, mean, basis), pool=1)
    # target 1.0: every sampled query exact, so that results can be compared one for one
    calibration = calibrate(vectors, coarse, pools=SETTINGS.pools, queries=100, target=1.0)
    assert calibration.pool is not None and calibration.recall == 1.0
    coarse = CoarseIndex(mean, basis, coarse.codes, calibration.pool, calibration.recall)
    return vectors, coarse


def _queries(count: int = 40) -> np.ndarray:
    """New vectors from the same distribution as the indexed ones (like new photos)."""
    return clustered(count, seed=99)


def test_two_stage_equals_exact_on_clustered_data(data):
    vectors, coarse = data
    assert coarse.pool < len(vectors) // 8  # the two-stage path is taken, not a full scan
    for query in _queries():
        for k in (1, 10, 25):
            rows, scores = top_k(vectors, query, k, coarse=coarse)
            exact_rows, exact_scores = top_k(vectors, query, k)
            assert rows.tolist() == exact_rows.tolist()
            np.testing.assert_allclose(scores, exact_scores, rtol=1e-5)
            np.testing.assert_allclose(scores, vectors[rows] @ query, rtol=1e-5)  # exact cosine


def test_the_default_target_holds_on_new_queries(data):
    vectors, coarse = data
    calibration = calibrate(vectors, coarse, pools=SETTINGS.pools, queries=100)
    assert calibration.recall >= 0.99 and calibration.pool < coarse.pool
    coarse = CoarseIndex(coarse.mean, coarse.basis, coarse.codes, calibration.pool)
    found = []
    for query in _queries(200):
        rows, _ = top_k(vectors, query, 10, coarse=coarse)
        found.append(len(set(rows.tolist()) & set(top_k(vectors, query, 10)[0].tolist())))
    assert np.mean(found) / 10 >= 0.98


def test_masks_are_honoured_in_the_coarse_stage(data):
    vectors, coarse = data
    rng = np.random.default_rng(3)
    for query in _queries(20):
        nearest = top_k(vectors, query, 50)[0]
        exclude = rng.random(len(vectors)) < 0.6
        exclude[nearest[:30]] = True  # the best rows are all excluded
        rows, _ = top_k(vectors, query, 10, exclude=exclude, coarse=coarse)
        exact_rows, _ = top_k(vectors, query, 10, exclude=exclude)
        assert not exclude[rows].any()
        assert rows.tolist() == exact_rows.tolist()


def test_few_eligible_rows_and_k_larger_than_eligible(data):
    vectors, coarse = data
    query = vectors[0]
    exclude = np.ones(len(vectors), bool)
    exclude[[5, 17, 3000]] = False
    rows, scores = top_k(vectors, query, 10, exclude=exclude, coarse=coarse)
    assert sorted(rows.tolist()) == [5, 17, 3000]  # all eligible rows, best first
    assert np.all(np.diff(scores) <= 0)
    exclude[: coarse.pool * 2] = False  # more eligible than the pool, fewer than k
    rows, _ = top_k(vectors, query, len(vectors), exclude=exclude, coarse=coarse)
    assert len(rows) == np.count_nonzero(~exclude)
    rows, _ = top_k(vectors, query, 3, exclude=np.ones(len(vectors), bool), coarse=coarse)
    assert rows.size == 0


def test_a_mismatched_coarse_index_is_refused(data):
    vectors, coarse = data
    with pytest.raises(ValueError, match="does not match"):
        top_k(vectors[:100], vectors[0], 5, coarse=coarse)


def _build(directory: Path, vectors: np.ndarray, settings: CoarseSettings = SETTINGS) -> IndexStore:
    store = IndexStore.create(directory, SPACE)
    with store.writer(coarse=settings) as writer:
        for n, vector in enumerate(vectors):
            writer.put(Item(f"i{n}", f"{n}.png", f"h{n}"), vector)
    return store


def _files(directory: Path, pattern: str) -> list[str]:
    return sorted(p.name for p in directory.glob(pattern))


def test_commit_writes_reuses_and_cleans_coarse_files(tmp_path: Path):
    vectors = clustered(3000)
    store = _build(tmp_path / "ix", vectors)
    snap = store.snapshot()
    info = json.loads(snap.state["coarse"])
    assert info["codes"] == "coarse-1.npy" and info["basis"] == "coarse-basis-1.npz"
    assert info["recall_at_10"] >= 0.99 and 20 <= info["pool"] <= 375  # at most rows / 8
    assert isinstance(snap.coarse.codes, np.memmap) and snap.coarse.codes.shape == (16, 3000)
    query = vectors[42]
    assert top_k(snap.vectors, query, 5, coarse=snap.coarse)[0][0] == 42

    with store.writer(coarse=SETTINGS) as writer:  # a small change: basis and pool carry over
        writer.remove("i0")
        writer.put(Item("new", "new.png", "hnew"), vectors[1])
    snap = store.snapshot()
    info2 = json.loads(snap.state["coarse"])
    assert info2["codes"] == "coarse-2.npy" and info2["basis"] == "coarse-basis-1.npz"
    assert (info2["pool"], info2["changed_rows"]) == (info["pool"], 2)
    expected = encode(snap.vectors, snap.coarse.mean, snap.coarse.basis)
    np.testing.assert_allclose(snap.coarse.codes, expected, atol=1e-5)  # kept + new rows

    with store.writer(coarse=SETTINGS) as writer:  # a large change: refit and recalibrate
        for n in range(1, 400):
            writer.remove(f"i{n}")
    snap = store.snapshot()
    info3 = json.loads(snap.state["coarse"])
    assert (info3["codes"], info3["basis"], info3["changed_rows"]) == (
        "coarse-3.npy",
        "coarse-basis-3.npz",
        0,
    )
    directory = tmp_path / "ix"
    # this generation's files and the previous one's (readers may still use them), no others
    assert _files(directory, "coarse-*.np?") == [
        "coarse-2.npy",
        "coarse-3.npy",
        "coarse-basis-1.npz",
        "coarse-basis-3.npz",
    ]
    with store.writer(coarse=SETTINGS) as writer:  # below the threshold: exact search again
        for n in range(400, 2500):
            writer.remove(f"i{n}")
    with store.writer(coarse=SETTINGS) as writer:
        writer.remove("i2500")
    snap = store.snapshot()
    assert snap.state["coarse"] == "" and snap.coarse is None
    assert _files(directory, "coarse-*") == []
    assert not list(directory.glob(".*.tmp"))


def test_an_index_without_coarse_data_searches_exactly(tmp_path: Path, caplog):
    vectors = clustered(1500)
    store = _build(tmp_path / "ix", vectors)
    query = vectors[3]
    expected = top_k(vectors, query, 10)
    with contextlib.closing(sqlite3.connect(tmp_path / "ix" / MANIFEST_FILE)) as con, con:
        con.execute("DELETE FROM state WHERE key = 'coarse'")  # as written by older versions
    snap = IndexStore.open(tmp_path / "ix").snapshot()
    assert snap.coarse is None
    assert top_k(snap.vectors, query, 10, coarse=snap.coarse)[0].tolist() == expected[0].tolist()

    store = _build(tmp_path / "damaged", vectors)
    codes = tmp_path / "damaged" / json.loads(store.snapshot().state["coarse"])["codes"]
    codes.write_bytes(codes.read_bytes()[:1000])
    assert store.snapshot().coarse is None  # unreadable coarse data: exact search, logged
    assert "searching exactly" in caplog.text

    store = _build(tmp_path / "stale", vectors)  # an older version committed another matrix
    with contextlib.closing(sqlite3.connect(tmp_path / "stale" / MANIFEST_FILE)) as con, con:
        con.execute("UPDATE state SET value = 'vectors-9.npy' WHERE key = 'vectors'")
    (tmp_path / "stale" / "vectors-1.npy").rename(tmp_path / "stale" / "vectors-9.npy")
    assert store.snapshot().coarse is None

    store = _build(tmp_path / "default", vectors, CoarseSettings())  # below 20k rows
    assert store.snapshot().coarse is None and store.snapshot().state["coarse"] == ""


def _isotropic(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_recall_guard_falls_back_to_exact_on_isotropic_vectors(tmp_path: Path):
    settings = replace(SETTINGS, quantized=False)  # principal components only
    store = _build(tmp_path / "ix", _isotropic(2000), settings)
    snap = store.snapshot()
    info = json.loads(snap.state["coarse"])
    assert info["codes"] == "" and info["recall_at_10"] < 0.99  # measured, recorded, not used
    assert snap.coarse is None and _files(tmp_path / "ix", "coarse-*") == []
    with store.writer(coarse=settings) as writer:  # a small change keeps the decision
        writer.remove("i0")
    assert json.loads(store.snapshot().state["coarse"])["changed_rows"] == 1


def test_isotropic_vectors_get_int8_codes_that_find_the_exact_neighbours(
    tmp_path: Path, monkeypatch
):
    vectors = _isotropic(3000)
    store = _build(tmp_path / "ix", vectors)
    snap = store.snapshot()
    info = json.loads(snap.state["coarse"])
    assert info["kind"] == "int8" and info["recall_at_10"] >= 0.99 and info["pool"] <= 375
    stage = snap.coarse
    assert isinstance(stage, QuantizedIndex) and isinstance(stage.codes, np.memmap)
    assert stage.codes.dtype == np.int8 and stage.codes.shape == vectors.shape
    # the codes approximate the rows to within half a quantization step per dimension
    assert np.abs(stage.codes * stage.scale - vectors).max() <= stage.scale.max() / 2 + 1e-6
    # the compiled scan gives numpy's scores, and so does the fallback without numba
    query = _isotropic(1, seed=7)[0]
    expected = -(stage.codes.astype(np.float32) @ (query * stage.scale))
    np.testing.assert_allclose(stage.negated_scores(query), expected, rtol=1e-4, atol=1e-4)
    with monkeypatch.context() as patch:
        patch.setattr(quantized, "_compiled", [None])
        np.testing.assert_allclose(stage.negated_scores(query), expected, rtol=1e-4, atol=1e-4)
    same = 0
    for query in _isotropic(30, seed=5):
        rows, scores = top_k(snap.vectors, query, 10, coarse=stage)
        exact_rows = top_k(vectors, query, 10)[0]
        np.testing.assert_allclose(scores, vectors[rows] @ query, rtol=1e-5)  # exact scores
        same += len(set(rows.tolist()) & set(exact_rows.tolist()))
    assert same >= 0.99 * 300

    with store.writer(coarse=SETTINGS) as writer:  # a small change: scales and pool carry over
        writer.remove("i0")
        writer.put(Item("new", "new.png", "hnew"), vectors[1] * -1)
    snap = store.snapshot()
    info2 = json.loads(snap.state["coarse"])
    assert (info2["kind"], info2["basis"], info2["pool"]) == ("int8", info["basis"], info["pool"])
    assert info2["codes"] == "coarse-2.npy" and isinstance(snap.coarse, QuantizedIndex)
    np.testing.assert_array_equal(snap.coarse.codes, quantize(snap.vectors, snap.coarse.scale))
    assert top_k(snap.vectors, -vectors[1], 1, coarse=snap.coarse)[0][0] == len(snap.items) - 1


def test_the_guard_enlarges_the_pool_when_small_pools_miss(data):
    vectors, coarse = data
    tight = calibrate(vectors, coarse, pools=(11, 400), queries=100)
    assert tight.pool == 400 and tight.recall >= 0.99
    assert calibrate(vectors, coarse, pools=(11,), queries=100).pool is None


def test_engine_search_uses_the_coarse_stage(tmp_path: Path, monkeypatch):
    vectors = clustered(3000)
    store = _build(tmp_path / "ix", vectors)
    engine = Engine(store)
    assert engine.snapshot.coarse is not None
    seen = []
    real = CoarseIndex.negated_scores
    monkeypatch.setattr(CoarseIndex, "negated_scores", lambda s, q: seen.append(1) or real(s, q))
    query = _queries(1)[0]
    results = engine.search_vector(query, 5, exclude_rows=[0, 1])
    assert seen  # the two-stage path ran
    expected = top_k(vectors, query, 5, exclude=np.isin(np.arange(3000), [0, 1]))[0]
    assert [r.id for r in results] == [f"i{row}" for row in expected]


def test_a_tuned_engine_searches_its_projected_matrix_in_two_stages(tmp_path: Path, monkeypatch):
    vectors = clustered(3000)
    store = _build(tmp_path / "ix", vectors)
    labels = np.argmax(vectors[:, :4], axis=1)  # any labels: the projection only has to exist
    projection = fit_projection(vectors, labels, dim=40)
    projection.save(store.directory)
    builds = []
    real_build = tuned_space_module._build
    monkeypatch.setattr(tuned_space_module, "_build", lambda *a: builds.append(1) or real_build(*a))
    # the engine's settings, scaled down to this index
    monkeypatch.setattr(engine_module, "tuned_space", partial(tuned_space, settings=SETTINGS))
    engine = Engine(store)
    projected = projection.apply(vectors)
    with ThreadPoolExecutor(3) as pool:  # concurrent first queries: one build between them
        list(pool.map(lambda q: engine.search_vector(q, 10), _queries(3)))
    for query in _queries(5):
        results = engine.search_vector(query, 10)
        expected = top_k(projected, projection.apply(query), 10)[0]
        assert [r.id for r in results] == [f"i{row}" for row in expected]
    stage = engine._first_stage(engine.snapshot)
    assert len(builds) == 1 and isinstance(stage, CoarseIndex)  # built once, then cached
    assert stage.codes.shape == (16, 3000) and stage.pool < 3000 // 8
    assert build_first_stage(projected) is None  # the default settings: from 20,000 rows
    # another engine (another process, a CLI call) memory-maps what the first one wrote
    other = Engine(IndexStore.open(store.directory))
    query = _queries(1)[0]
    assert [r.id for r in other.search_vector(query, 10)] == [
        r.id for r in engine.search_vector(query, 10)
    ]
    assert len(builds) == 1 and isinstance(other._search_space(other.snapshot)[1], np.memmap)


def test_a_stage_covering_a_prefix_scores_the_newer_rows_exactly(data):
    vectors, coarse = data
    covered = 3000  # the stage's codes cover the first 3,000 rows; 1,000 were added after
    prefix = CoarseIndex(coarse.mean, coarse.basis, coarse.codes[:, :covered], coarse.pool)
    assert prefix.matches(vectors) and not prefix.matches(vectors[:2000])
    rng = np.random.default_rng(7)
    for query in np.concatenate([_queries(10), vectors[[3500, 3999]]]):
        for exclude in (None, rng.random(len(vectors)) < 0.5, np.arange(len(vectors)) < 2990):
            rows, scores = top_k(vectors, query, 10, exclude=exclude, coarse=prefix)
            exact_rows, _ = top_k(vectors, query, 10, exclude=exclude)
            assert rows.tolist() == exact_rows.tolist()
            np.testing.assert_allclose(scores, vectors[rows] @ query, rtol=1e-5)


def test_additions_keep_the_codes_until_too_many_rows_lack_them(tmp_path: Path):
    vectors = clustered(5200)
    settings = replace(SETTINGS, max_drift=1.0)  # only the uncovered rows decide here
    store = _build(tmp_path / "ix", vectors[:3000], settings)
    first = json.loads(store.snapshot().state["coarse"])
    for start in (3000, 3010):  # small additions: the same codes file, covering 3,000 rows
        with store.writer(coarse=settings) as writer:
            for n in range(start, start + 10):
                writer.put(Item(f"i{n}", f"{n}.png", f"h{n}"), vectors[n])
        snap = store.snapshot()
        info = json.loads(snap.state["coarse"])
        assert info["codes"] == first["codes"] and len(snap.coarse) == 3000
        assert info["changed_rows"] == start - 2990
    for query in vectors[[5, 3015, 3019]]:  # an old row and two new ones find themselves first
        assert top_k(snap.vectors, query, 1, coarse=snap.coarse)[0][0] in {5, 3015, 3019}
        assert (
            top_k(snap.vectors, query, 10, coarse=snap.coarse)[0].tolist()
            == top_k(snap.vectors, query, 10)[0].tolist()
        )
    basis = np.array(snap.coarse.basis)
    with store.writer(coarse=settings) as writer:  # 2,100 rows without codes: past 2,048
        for n in range(3020, 5100):
            writer.put(Item(f"i{n}", f"{n}.png", f"h{n}"), vectors[n])
    snap = store.snapshot()
    assert len(snap.coarse) == 5100 and json.loads(snap.state["coarse"])["codes"] != first["codes"]
    np.testing.assert_array_equal(snap.coarse.basis, basis)  # carried over, not fitted again
