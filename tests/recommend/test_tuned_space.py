"""A tuned index's search space on disk: written once, memory-mapped by later engines, carried
across commits (only new rows projected, the first stage kept while few rows change), rebuilt
when damaged or re-tuned, and kept in memory where the index cannot be written."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from stylefinder.index.coarse import CoarseSettings
from stylefinder.index.search import CoarseIndex, top_k
from stylefinder.index.store import IndexStore
from stylefinder.recommend import tuned_space as tuned_space_module
from stylefinder.recommend.engine import Engine
from stylefinder.recommend.projection import Projection, fit_projection
from stylefinder.recommend.tuned_space import TUNED_FOLDER, row_digests, tuned_space
from stylefinder.types import EmbeddingSpace, Item

DIM = 48
SETTINGS = CoarseSettings(min_rows=1000, dim=12, queries=100, pools=(20, 50, 100, 200))


def clustered(n: int, seed: int) -> np.ndarray:
    scale = np.arange(1, DIM + 1) ** -1.0
    centres = np.random.default_rng(0).normal(size=(40, DIM)) * scale
    rng = np.random.default_rng(seed)
    x = 0.8 + centres[rng.integers(0, 40, n)] + 0.6 * rng.normal(size=(n, DIM)) * scale
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def tuned(tmp_path: Path) -> tuple[IndexStore, Projection, np.ndarray]:
    vectors = clustered(2000, seed=1)
    store = IndexStore.create(tmp_path / "ix", EmbeddingSpace("net", "gem", "w", DIM))
    with store.writer() as writer:
        for n, vector in enumerate(vectors):
            writer.put(Item(f"i{n}", f"{n}.png", f"h{n}"), vector)
    fit_projection(vectors, np.argmax(vectors[:, :5], axis=1), dim=32).save(store.directory)
    return store, Projection.load(store.directory), vectors


def files(store: IndexStore) -> list[str]:
    """The tuned space's file names, without their writers' tokens."""
    names = (p.name for p in (store.directory / TUNED_FOLDER).iterdir())
    return sorted(re.sub(r"^(\w+-\d+-[0-9a-f]+)-[0-9a-f]{8}(\.npy)$", r"\1\2", n) for n in names)


def count_projected_rows(monkeypatch) -> list[int]:
    projected: list[int] = []
    real = Projection.apply

    def counting(self, vectors, **kwargs):
        projected.append(len(np.atleast_2d(vectors)))
        return real(self, vectors, **kwargs)

    monkeypatch.setattr(Projection, "apply", counting)
    return projected


def assert_searches_like_exact(matrix, stage, projection: Projection, vectors) -> None:
    exact = projection.apply(vectors)
    np.testing.assert_allclose(matrix, exact, atol=1e-6)
    for query in projection.apply(clustered(10, seed=9)):
        rows = top_k(matrix, query, 10, coarse=stage)[0]
        assert rows.tolist() == top_k(exact, query, 10)[0].tolist()


def test_written_once_then_memory_mapped(tuned, monkeypatch):
    store, projection, vectors = tuned
    projected = count_projected_rows(monkeypatch)
    _matrix, stage = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    assert sum(projected) == 2000 and isinstance(stage, CoarseIndex) and stage.pool < 2000 // 8
    key = f"1-{projection.digest}"
    assert files(store) == [
        f"codes-{key}.npy",
        f"matrix-{key}.npy",
        f"rows-{key}.npy",
        f"stage-{key}.npz",
    ]
    projected.clear()
    again, stage_again = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    assert not projected and isinstance(again, np.memmap)  # read, not rebuilt
    assert stage_again.pool == stage.pool and np.array_equal(stage_again.codes, stage.codes)
    assert_searches_like_exact(again, stage_again, projection, vectors)


def test_a_commit_projects_only_new_rows_and_keeps_the_stage(tuned, monkeypatch):
    store, projection, _vectors = tuned
    _, first = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    added = clustered(30, seed=2)
    with store.writer() as writer:
        for n in range(20):
            writer.remove(f"i{n}")
        for n, vector in enumerate(added):
            writer.put(Item(f"new{n}", f"new{n}.png", f"hn{n}"), vector)
    snapshot = store.snapshot()
    projected = count_projected_rows(monkeypatch)
    matrix, stage = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert sum(projected) == 30  # the 1,980 kept rows were copied
    assert np.array_equal(stage.basis, first.basis) and stage.pool == first.pool  # carried
    assert_searches_like_exact(matrix, stage, projection, np.asarray(snapshot.vectors))
    assert all(name.split("-")[1] == str(snapshot.generation) for name in files(store))


def test_many_changes_refit_the_stage(tuned):
    store, projection, _vectors = tuned
    _, first = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    with store.writer() as writer:  # 10% of the rows: beyond max_drift (5%)
        for n, vector in enumerate(clustered(200, seed=3)):
            writer.put(Item(f"new{n}", f"new{n}.png", f"hn{n}"), vector)
    snapshot = store.snapshot()
    matrix, stage = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert not np.array_equal(stage.basis, first.basis)  # fitted again
    assert_searches_like_exact(matrix, stage, projection, np.asarray(snapshot.vectors))


def test_a_new_projection_starts_afresh_and_removes_the_old_space(tuned, monkeypatch):
    store, projection, vectors = tuned
    tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    fit_projection(vectors, np.argmax(vectors[:, 5:9], axis=1), dim=30).save(store.directory)
    retuned = Projection.load(store.directory)
    assert retuned.digest != projection.digest
    projected = count_projected_rows(monkeypatch)
    matrix, _stage = tuned_space(store.directory, store.snapshot(), retuned, SETTINGS)
    assert sum(projected) == 2000 and matrix.shape == (2000, retuned.dim)
    assert all(retuned.digest in name for name in files(store))


def test_a_damaged_space_is_rebuilt(tuned, caplog):
    store, projection, vectors = tuned
    tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    path = next((store.directory / TUNED_FOLDER).glob(f"matrix-1-{projection.digest}-*.npy"))
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with caplog.at_level(logging.WARNING):
        matrix, stage = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    assert "unreadable" in caplog.text
    assert_searches_like_exact(matrix, stage, projection, vectors)


def test_an_unwritable_index_keeps_the_space_in_memory(tuned, monkeypatch, caplog):
    store, projection, vectors = tuned

    def read_only(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tuned_space_module, "_build", read_only)
    with caplog.at_level(logging.WARNING):
        matrix, stage = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    assert "in memory" in caplog.text and not isinstance(matrix, np.memmap)
    assert_searches_like_exact(matrix, stage, projection, vectors)


def test_row_digests_tell_rows_apart():
    rows = clustered(500, seed=4)
    digests = row_digests(rows)
    assert len(np.unique(digests)) == 500
    assert np.array_equal(row_digests(rows[::-1]), digests[::-1])
    changed = rows.copy()
    changed[7, 3] = np.nextafter(changed[7, 3], 2)  # one bit
    assert (row_digests(changed) != digests).tolist() == [n == 7 for n in range(500)]


def test_a_commit_of_metadata_only_keeps_the_space(tuned, monkeypatch):
    store, projection, _vectors = tuned
    tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    before = files(store)
    with store.writer() as writer:
        writer.put(Item("i5", "5.png", "h5", metadata={"colour": "red"}), None)
    snapshot = store.snapshot()
    assert snapshot.generation == 2 and snapshot.items[5].metadata == {"colour": "red"}
    projected = count_projected_rows(monkeypatch)
    matrix, _ = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert not projected and isinstance(matrix, np.memmap) and files(store) == before


def test_the_index_size_counts_the_tuned_space(tuned):
    store, projection, _vectors = tuned
    engine = Engine(store)
    before = engine.info().size_bytes
    tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    assert engine.info().size_bytes >= before + 2000 * projection.dim * 4  # the matrix, at least


def add(store: IndexStore, vectors: np.ndarray, prefix: str) -> None:
    with store.writer() as writer:
        for n, vector in enumerate(vectors):
            writer.put(Item(f"{prefix}{n}", f"{prefix}{n}.png", f"h{prefix}{n}"), vector)


def test_additions_are_projected_into_the_spare_rows_of_the_same_space(tuned, monkeypatch):
    store, projection, _vectors = tuned
    key = projection.digest
    old_matrix, first = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    old_rows = np.array(old_matrix)
    add(store, clustered(30, seed=5), "a")
    add(store, clustered(20, seed=6), "b")
    snapshot = store.snapshot()
    projected = count_projected_rows(monkeypatch)
    matrix, stage = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert sum(projected) == 50 and matrix.shape == (2050, projection.dim)
    assert len(stage) == 2000 and np.array_equal(stage.basis, first.basis)  # kept: the 50
    assert np.array_equal(stage.codes, first.codes)  # new rows are scored exactly
    assert_searches_like_exact(matrix, stage, projection, np.asarray(snapshot.vectors))
    assert np.array_equal(old_matrix, old_rows)  # what a reader of generation 1 sees
    generation = snapshot.generation
    assert files(store) == [
        f"codes-1-{key}.npy",  # the first space's files, grown in place
        f"matrix-1-{key}.npy",
        f"rows-{generation}-{key}.npy",
        f"stage-{generation}-{key}.npz",
    ]
    projected.clear()
    again, stage_again = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert not projected and isinstance(again, np.memmap) and again.shape == (2050, projection.dim)
    assert len(stage_again) == 2000 and np.array_equal(stage_again.basis, first.basis)
    assert_searches_like_exact(again, stage_again, projection, np.asarray(snapshot.vectors))

    with store.writer() as writer:  # a removal: the space is copied to new files
        writer.remove("a3")
    snapshot = store.snapshot()
    projected.clear()
    matrix, stage = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert sum(projected) == 0 and len(stage) == 2049  # every row copied, codes carried
    assert_searches_like_exact(matrix, stage, projection, np.asarray(snapshot.vectors))
    assert all(name.split("-")[1] == str(snapshot.generation) for name in files(store))


def test_too_many_rows_without_codes_carry_the_stage_to_new_files(tuned, monkeypatch):
    store, projection, _vectors = tuned
    _, first = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    monkeypatch.setattr(tuned_space_module, "_MAX_UNCOVERED_ROWS", 10)
    add(store, clustered(30, seed=7), "a")
    snapshot = store.snapshot()
    matrix, stage = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert len(stage) == 2030 and np.array_equal(stage.basis, first.basis)
    assert_searches_like_exact(matrix, stage, projection, np.asarray(snapshot.vectors))
    assert all(name.split("-")[1] == str(snapshot.generation) for name in files(store))


def test_engines_growing_the_space_at_once_agree(tuned):
    from concurrent.futures import ThreadPoolExecutor

    store, projection, _vectors = tuned
    tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    add(store, clustered(10, seed=8), "a")
    middle = store.snapshot()
    add(store, clustered(10, seed=9), "b")
    latest = store.snapshot()
    jobs = [middle, latest] * 4  # two generations grown from the same space, each four times
    with ThreadPoolExecutor(4) as pool:
        spaces = list(
            pool.map(lambda s: tuned_space(store.directory, s, projection, SETTINGS), jobs)
        )
    for snapshot, (matrix, stage) in zip(jobs, spaces, strict=True):
        assert_searches_like_exact(matrix, stage, projection, np.asarray(snapshot.vectors))
    matrix, stage = tuned_space(store.directory, latest, projection, SETTINGS)
    assert_searches_like_exact(matrix, stage, projection, np.asarray(latest.vectors))


def test_an_older_engine_rebuilding_its_space_leaves_the_newer_one_whole(tuned):
    store, projection, vectors = tuned
    old = store.snapshot()
    tuned_space(store.directory, old, projection, SETTINGS)
    add(store, clustered(30, seed=10), "a")
    new = store.snapshot()
    tuned_space(store.directory, new, projection, SETTINGS)  # grows the first space's files
    matrix, stage = tuned_space(store.directory, old, projection, SETTINGS)  # its stage is gone
    assert_searches_like_exact(matrix, stage, projection, vectors)
    matrix, stage = tuned_space(store.directory, new, projection, SETTINGS)
    assert_searches_like_exact(matrix, stage, projection, np.asarray(new.vectors))
