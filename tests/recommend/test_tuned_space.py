"""A tuned index's search space on disk: written once, memory-mapped by later engines, carried
across commits (only new rows projected, the graph kept: renumbered, with tombstones, grown when
many rows lack a node), rebuilt when damaged or re-tuned, and kept in memory where the index
cannot be written."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from stylefinder.engine import Engine
from stylefinder.index.hnsw import HnswIndex
from stylefinder.index.search import top_k
from stylefinder.index.store import IndexStore
from stylefinder.index.vector_index import AnnSettings, ExactIndex
from stylefinder.recommend import tuned_space as tuned_space_module
from stylefinder.recommend.projection import Projection, fit_projection
from stylefinder.recommend.tuned_space import TUNED_FOLDER, row_digests, tuned_space
from stylefinder.types import EmbeddingSpace, Item

DIM = 48
SETTINGS = AnnSettings(kind="auto", min_rows=1000, degree=16, queries=100)


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
    token = r"^(\w+-\d+-[0-9a-f]+)-[0-9a-f]{8}((?:-graph|-labels)?\.(?:npy|faiss))$"
    return sorted(re.sub(token, r"\1\2", n) for n in names)


def stage_entry(store: IndexStore, generation: int, projection: Projection) -> dict:
    """The vector index entry that the stage file of `generation` records."""
    path = store.directory / TUNED_FOLDER / f"stage-{generation}-{projection.digest}.npz"
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["info"]))["index"]


def count_projected_rows(monkeypatch) -> list[int]:
    projected: list[int] = []
    real = Projection.apply

    def counting(self, vectors, **kwargs):
        projected.append(len(np.atleast_2d(vectors)))
        return real(self, vectors, **kwargs)

    monkeypatch.setattr(Projection, "apply", counting)
    return projected


def assert_searches_like_exact(
    matrix, index, projection: Projection, vectors, recall=0.95, empty=()
):
    """`matrix` is the projection of `vectors`, and `index` searches every row of it but the
    `empty` ones with exact scores and a recall@10 against exact search of at least `recall`
    over 50 queries."""
    exact = projection.apply(vectors)
    np.testing.assert_allclose(matrix, exact, atol=1e-6)
    live = np.setdiff1d(np.arange(len(exact)), np.asarray(empty, np.int64))
    assert len(index) == len(live)
    queries = projection.apply(clustered(50, seed=9))
    rows, scores = index.search(queries, 10)
    assert rows.shape == (50, 10) and (rows >= 0).all() and np.isin(rows, live).all()
    found = 0
    for query, got, got_scores in zip(queries, rows, scores, strict=True):
        np.testing.assert_allclose(got_scores, exact[got] @ query, atol=1e-5)  # exact scores
        kth = top_k(exact[live], query, 10)[1][-1]
        found += int(np.count_nonzero(got_scores >= kth - 1e-6))
    assert found / rows.size >= recall


def assert_finds_rows(index, matrix, rows: np.ndarray) -> None:
    """Each of `rows` comes back first when its own projected vector is the query."""
    found, _ = index.search(np.asarray(matrix[rows]), 1)
    assert found[:, 0].tolist() == rows.tolist()


def add(store: IndexStore, vectors: np.ndarray, prefix: str) -> None:
    with store.writer() as writer:
        for n, vector in enumerate(vectors):
            writer.put(Item(f"{prefix}{n}", f"{prefix}{n}.png", f"h{prefix}{n}"), vector)


def test_written_once_then_memory_mapped(tuned, monkeypatch):
    store, projection, vectors = tuned
    projected = count_projected_rows(monkeypatch)
    matrix, index = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    assert sum(projected) == 2000 and isinstance(index, HnswIndex)
    assert index.params["nodes"] == 2000 and index.params["recall_at_10"] >= 0.95
    assert_searches_like_exact(matrix, index, projection, vectors)
    key = f"1-{projection.digest}"
    assert files(store) == [
        f"ann-{key}-graph.faiss",
        f"ann-{key}-labels.npy",
        f"matrix-{key}.npy",
        f"rows-{key}.npy",
        f"stage-{key}.npz",
    ]
    assert stage_entry(store, 1, projection)["search_width"] == index.params["search_width"]
    projected.clear()
    again, index_again = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    assert not projected and isinstance(again, np.memmap)  # read, not rebuilt
    assert isinstance(index_again, HnswIndex) and index_again.params == index.params
    assert_searches_like_exact(again, index_again, projection, vectors)
    query = np.asarray(again[7])  # filters, as the engine passes them
    allowed = np.arange(2000) % 2 == 1
    rows, _ = index_again.search(query, 10, allowed=allowed, excluded=np.array([9, 11]))
    assert (rows >= 0).all() and (rows % 2 == 1).all() and not np.isin(rows, [9, 11]).any()


def test_below_min_rows_the_space_is_searched_exactly(tuned):
    store, projection, vectors = tuned
    for settings in (AnnSettings(min_rows=5000), AnnSettings(kind="exact", min_rows=0)):
        matrix, index = tuned_space(store.directory, store.snapshot(), projection, settings)
        assert isinstance(index, ExactIndex)
        assert_searches_like_exact(matrix, index, projection, vectors, recall=1.0)
        assert not any(name.startswith("ann-") for name in files(store))


def test_a_commit_projects_only_new_rows_and_carries_the_graph(tuned, monkeypatch):
    """Removals leave their rows empty (the store compacts only past a share of them): the
    space extends its matrix with the new rows and its graph skips the empty ones."""
    store, projection, _vectors = tuned
    tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    first = stage_entry(store, 1, projection)
    added = clustered(30, seed=2)
    with store.writer() as writer:
        for n in range(20):
            writer.remove(f"i{n}")
        for n, vector in enumerate(added):
            writer.put(Item(f"new{n}", f"new{n}.png", f"hn{n}"), vector)
    snapshot = store.snapshot()
    projected = count_projected_rows(monkeypatch)
    matrix, index = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert sum(projected) == 30 and snapshot.size == 2030  # the 2,000 rows kept in place
    assert isinstance(index, HnswIndex) and index.params["tombstones"] == 20
    assert index.uncovered == 30  # the new rows, scored exactly
    assert stage_entry(store, 2, projection)["graph"] == first["graph"]  # carried over
    vectors = np.asarray(snapshot.vectors)
    assert_searches_like_exact(matrix, index, projection, vectors, empty=range(20))
    assert_finds_rows(index, matrix, np.arange(2000, 2030))
    key = projection.digest
    assert files(store) == [  # the first space's graph and matrix (extended in place)
        f"ann-1-{key}-graph.faiss",
        f"ann-1-{key}-labels.npy",
        f"matrix-1-{key}.npy",
        f"rows-2-{key}.npy",
        f"stage-2-{key}.npz",
    ]


def test_many_removals_rebuild_the_graph(tuned):
    store, projection, _vectors = tuned
    tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    first = stage_entry(store, 1, projection)
    with store.writer() as writer:  # 25% of the rows: beyond max_tombstone_share (20%)
        for n in range(0, 2000, 4):
            writer.remove(f"i{n}")
    snapshot = store.snapshot()
    matrix, index = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert isinstance(index, HnswIndex) and index.params["tombstones"] == 0
    assert index.params["nodes"] == 1500 and index.uncovered == 0
    assert stage_entry(store, 2, projection)["graph"] != first["graph"]  # built again
    assert_searches_like_exact(matrix, index, projection, np.asarray(snapshot.vectors))
    assert all(name.split("-")[1] == "2" for name in files(store))


def test_a_new_projection_starts_afresh_and_removes_the_old_space(tuned, monkeypatch):
    store, projection, vectors = tuned
    tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    fit_projection(vectors, np.argmax(vectors[:, 5:9], axis=1), dim=30).save(store.directory)
    retuned = Projection.load(store.directory)
    assert retuned.digest != projection.digest
    projected = count_projected_rows(monkeypatch)
    matrix, _index = tuned_space(store.directory, store.snapshot(), retuned, SETTINGS)
    assert sum(projected) == 2000 and matrix.shape == (2000, retuned.dim)
    assert all(retuned.digest in name for name in files(store)) and len(files(store)) == 5


def test_a_damaged_space_is_rebuilt(tuned, caplog):
    store, projection, vectors = tuned
    tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    path = next((store.directory / TUNED_FOLDER).glob(f"matrix-1-{projection.digest}-*.npy"))
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with caplog.at_level(logging.WARNING):
        matrix, index = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    assert "unreadable" in caplog.text
    assert_searches_like_exact(matrix, index, projection, vectors)


def test_a_damaged_graph_is_rebuilt_from_the_projected_rows(tuned, monkeypatch, caplog):
    store, projection, vectors = tuned
    tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    path = next((store.directory / TUNED_FOLDER).glob("ann-*-graph.faiss"))
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    projected = count_projected_rows(monkeypatch)
    with caplog.at_level(logging.WARNING):
        matrix, index = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    assert "unreadable" in caplog.text and not projected  # the rows were copied
    assert isinstance(index, HnswIndex)
    assert_searches_like_exact(matrix, index, projection, vectors)
    again, index_again = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    assert isinstance(again, np.memmap) and index_again.params == index.params


def test_an_unwritable_index_keeps_the_space_in_memory(tuned, monkeypatch, caplog):
    store, projection, vectors = tuned

    def read_only(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tuned_space_module, "_build", read_only)
    with caplog.at_level(logging.WARNING):
        matrix, index = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    assert "in memory" in caplog.text and not isinstance(matrix, np.memmap)
    assert isinstance(index, HnswIndex)  # built in memory, as the settings choose
    assert_searches_like_exact(matrix, index, projection, vectors)
    assert not any((store.directory / TUNED_FOLDER).glob("stage-*"))


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


def test_additions_are_projected_into_the_spare_rows_of_the_same_space(tuned, monkeypatch):
    store, projection, _vectors = tuned
    key = projection.digest
    old_matrix, _ = tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    first = stage_entry(store, 1, projection)
    old_rows = np.array(old_matrix)
    add(store, clustered(30, seed=5), "a")
    add(store, clustered(20, seed=6), "b")
    snapshot = store.snapshot()
    projected = count_projected_rows(monkeypatch)
    matrix, index = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert sum(projected) == 50 and matrix.shape == (2050, projection.dim)
    assert index.params["nodes"] == 2000 and index.uncovered == 50  # within max_uncovered_rows
    entry = stage_entry(store, snapshot.generation, projection)
    assert (entry["graph"], entry["labels"]) == (first["graph"], first["labels"])  # kept
    assert_searches_like_exact(matrix, index, projection, np.asarray(snapshot.vectors))
    assert_finds_rows(index, matrix, np.arange(2000, 2050))  # the new rows are found
    assert np.array_equal(old_matrix, old_rows)  # what a reader of generation 1 sees
    generation = snapshot.generation
    assert files(store) == [
        f"ann-1-{key}-graph.faiss",  # the first space's files, the matrix grown in place
        f"ann-1-{key}-labels.npy",
        f"matrix-1-{key}.npy",
        f"rows-{generation}-{key}.npy",
        f"stage-{generation}-{key}.npz",
    ]
    projected.clear()
    again, index_again = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert not projected and isinstance(again, np.memmap) and again.shape == (2050, projection.dim)
    assert index_again.uncovered == 50
    assert_searches_like_exact(again, index_again, projection, np.asarray(snapshot.vectors))
    assert_finds_rows(index_again, again, np.arange(2000, 2050))

    before = files(store)
    with store.writer() as writer:  # a removal empties a row: the same space, the row skipped
        writer.remove("a3")
    snapshot = store.snapshot()
    assert snapshot.state["matrix_generation"] == str(generation) and snapshot.size == 2050
    projected.clear()
    matrix, index = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert sum(projected) == 0 and len(index) == 2049 and index.uncovered == 49
    empty = [snapshot.size - 50 + 3]  # a3: the fourth of the rows added
    assert snapshot.row_of.get("a3") is None and snapshot.items.many(empty) == [None]
    assert_searches_like_exact(matrix, index, projection, np.asarray(snapshot.vectors), empty=empty)
    assert files(store) == before  # nothing written


def test_too_many_rows_without_a_node_grow_the_graph(tuned):
    store, projection, _vectors = tuned
    settings = AnnSettings(
        kind="auto", min_rows=1000, degree=16, queries=100, max_uncovered_rows=10
    )
    tuned_space(store.directory, store.snapshot(), projection, settings)
    first = stage_entry(store, 1, projection)
    add(store, clustered(30, seed=7), "a")
    snapshot = store.snapshot()
    matrix, index = tuned_space(store.directory, snapshot, projection, settings)
    assert index.uncovered == 0 and index.params["nodes"] == 2030
    assert index.params["search_width"] == first["search_width"]  # grown, not built again
    assert_searches_like_exact(matrix, index, projection, np.asarray(snapshot.vectors))
    assert_finds_rows(index, matrix, np.arange(2000, 2030))
    key, generation = projection.digest, snapshot.generation
    assert files(store) == [
        f"ann-{generation}-{key}-graph.faiss",
        f"ann-{generation}-{key}-labels.npy",
        f"matrix-1-{key}.npy",  # grown in place
        f"rows-{generation}-{key}.npy",
        f"stage-{generation}-{key}.npz",
    ]
    again, index_again = tuned_space(store.directory, snapshot, projection, settings)
    assert index_again.uncovered == 0 and index_again.params["nodes"] == 2030
    assert_finds_rows(index_again, again, np.arange(2000, 2030))


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
    for snapshot, (matrix, index) in zip(jobs, spaces, strict=True):
        assert_searches_like_exact(matrix, index, projection, np.asarray(snapshot.vectors))
    matrix, index = tuned_space(store.directory, latest, projection, SETTINGS)
    assert_searches_like_exact(matrix, index, projection, np.asarray(latest.vectors))


def test_an_older_engine_rebuilding_its_space_leaves_the_newer_one_whole(tuned):
    store, projection, vectors = tuned
    old = store.snapshot()
    tuned_space(store.directory, old, projection, SETTINGS)
    add(store, clustered(30, seed=10), "a")
    new = store.snapshot()
    tuned_space(store.directory, new, projection, SETTINGS)  # grows the first space's files
    matrix, index = tuned_space(store.directory, old, projection, SETTINGS)  # its stage is gone
    assert_searches_like_exact(matrix, index, projection, vectors)
    matrix, index = tuned_space(store.directory, new, projection, SETTINGS)
    assert_searches_like_exact(matrix, index, projection, np.asarray(new.vectors))


def test_a_space_grown_past_min_rows_gets_a_graph(tuned, monkeypatch):
    store, projection, _vectors = tuned
    settings = AnnSettings(kind="auto", min_rows=2010, degree=16, queries=100)
    _, index = tuned_space(store.directory, store.snapshot(), projection, settings)
    assert isinstance(index, ExactIndex)
    add(store, clustered(20, seed=11), "a")
    snapshot = store.snapshot()
    projected = count_projected_rows(monkeypatch)
    matrix, index = tuned_space(store.directory, snapshot, projection, settings)
    assert sum(projected) == 20 and isinstance(index, HnswIndex)  # the 2,000 rows copied
    assert index.params["nodes"] == 2020 and index.uncovered == 0
    assert_searches_like_exact(matrix, index, projection, np.asarray(snapshot.vectors))


def test_a_space_of_an_older_version_lends_its_rows_and_loses_its_first_stage(tuned, monkeypatch):
    store, projection, _vectors = tuned
    tuned_space(store.directory, store.snapshot(), projection, SETTINGS)
    folder = store.directory / TUNED_FOLDER
    stage = folder / f"stage-1-{projection.digest}.npz"
    with np.load(stage, allow_pickle=False) as data:
        info = json.loads(str(data["info"]))
    codes = f"codes-1-{projection.digest}-0123abcd.npy"
    np.save(folder / codes, np.zeros((2000, 4), np.uint8))
    for name in (info["index"]["graph"], info["index"]["labels"]):
        (folder / name).unlink()
    old = {**info, "kind": "pq", "pool": 50, "files": {**info["files"], "codes": codes}}
    del old["index"]  # as older versions wrote it: a first stage instead of a vector index
    np.savez(stage, info=json.dumps(old))
    add(store, clustered(20, seed=12), "a")
    snapshot = store.snapshot()
    projected = count_projected_rows(monkeypatch)
    matrix, index = tuned_space(store.directory, snapshot, projection, SETTINGS)
    assert sum(projected) == 20 and isinstance(index, HnswIndex)  # the 2,000 rows copied
    assert_searches_like_exact(matrix, index, projection, np.asarray(snapshot.vectors))
    assert not (folder / codes).exists()
    assert all(name.split("-")[1] == str(snapshot.generation) for name in files(store))


def test_the_indexing_run_writes_the_space_so_that_queries_only_read_it(tuned, monkeypatch):
    from stylefinder.jobs.build import update_tuned_space

    store, _, _ = tuned
    assert update_tuned_space(store.directory)
    written = files(store)
    assert any(name.startswith("stage-") for name in written)

    def no_writes(*args, **kwargs):
        raise AssertionError("a query wrote the tuned space")

    monkeypatch.setattr(tuned_space_module, "_build", no_writes)
    monkeypatch.setattr(tuned_space_module, "_extend", no_writes)
    engine = Engine(store)
    assert [r.id for r in engine.similar("i0", 3)]
    assert files(store) == written
    (store.directory / "projection.npz").unlink()
    assert not update_tuned_space(store.directory)
