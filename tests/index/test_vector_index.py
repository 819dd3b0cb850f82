"""The contract every `VectorIndex` keeps: `VectorIndexContract` holds the tests (the searches
of `search_contract.SearchContract`, and additions and removals that survive save and load,
renumbering, binding), and each implementation inherits them with a factory that builds it
(like benfred/implicit's tests/recommender_base_test.py). The HNSW graph runs them twice: as a
writer builds it (held in memory) and as a reader loads it (memory-mapped, read-only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from search_contract import DIM, SearchContract, clustered, twins

from stylefinder.index.hnsw import HnswIndex
from stylefinder.index.hnsw_build import build_hnsw
from stylefinder.index.kinds import build_vector_index, load_vector_index
from stylefinder.index.vector_index import (
    AnnSettings,
    ExactIndex,
    VectorIndex,
    entry_files,
)

HNSW = AnnSettings(kind="hnsw", degree=16, queries=100, exact_filter_rows=50)


class VectorIndexContract(SearchContract):
    """The tests every `VectorIndex` passes: the searches of `SearchContract`, and rows added,
    removed, saved, loaded, bound and renumbered. A subclass per implementation sets `kind` and
    provides `build`: the index over every row of `vectors` (`folder` for its files, if any)."""

    def build(self, vectors: np.ndarray, folder: Path) -> VectorIndex:
        raise NotImplementedError

    def make(self, vectors: np.ndarray, folder: Path) -> VectorIndex:
        index = self.build(vectors, folder)
        assert isinstance(index, VectorIndex) and index.kind == self.kind
        return index

    def test_adds_and_removes_survive_save_and_load(self, tmp_path):
        vectors = twins(800)
        index = self.make(vectors, tmp_path)
        entry = index.save(tmp_path, "g1")
        assert entry["kind"] == self.kind
        assert all((tmp_path / name).is_file() for name in entry_files(entry))
        loaded = load_vector_index(tmp_path, entry, vectors)
        new = twins(5, seed=7)  # 10 rows, in twin pairs, after the 1600 there are
        rows = np.arange(len(vectors), len(vectors) + len(new))
        loaded.add(rows, new)
        loaded.remove(np.array([0, 1, 2]))
        assert len(loaded) == len(vectors) + len(new) - 3

        def check(index: VectorIndex) -> None:
            found, _ = index.search(new[0], 2)
            assert found[0].tolist() == [rows[0], rows[1]]  # an added row, then its twin
            found, _ = index.search(vectors[0], 5)
            assert not np.isin(found, [0, 1, 2]).any()
            assert index.search(vectors[3], 1)[0][0, 0] == 3

        check(loaded)
        entry = loaded.save(tmp_path, "g2")
        everything = np.concatenate([vectors, new])
        again = load_vector_index(tmp_path, entry, everything)
        check(again)
        assert len(again) == len(everything) - 3

    def test_vectors_of_another_dim_raise(self, tmp_path):
        index = self.make(twins(300), tmp_path)
        with pytest.raises(ValueError, match="dims"):
            index.add(np.array([600]), np.ones((1, DIM + 1), np.float32))
        with pytest.raises(ValueError):  # ExactIndex's fast path leaves the message to numpy
            index.search(np.ones(DIM + 1, np.float32), 3)

    def test_live_rows_mask_and_size_follow_adds_and_removes(self, tmp_path):
        vectors = twins(300)
        index = self.make(vectors, tmp_path)
        assert index.size == 600 and index.dim == DIM and index.params["kind"] == self.kind
        index.add(np.array([600, 601]), twins(1, seed=4))
        index.remove(np.array([3, 7, 9999]))  # an unknown row is ignored
        live = index.live_rows()
        assert index.size == 602 and len(index) == len(live) == 600
        assert 3 not in live and 7 not in live and {600, 601} <= set(live.tolist())
        assert (np.diff(live) > 0).all()
        mask = index.live_mask()
        assert mask.dtype == bool and len(mask) == 602
        assert np.flatnonzero(mask).tolist() == live.tolist()
        rows, _ = index.search(vectors[3], 600)
        assert not np.isin(rows, [3, 7]).any() and (rows >= 0).all()

    def test_bind_to_a_matrix_holding_the_added_rows(self, tmp_path):
        vectors = twins(400)
        index = self.make(vectors, tmp_path)
        new = twins(2, seed=6)
        index.add(np.arange(800, 804), new)
        with pytest.raises(ValueError, match="rows"):
            index.bind(vectors)  # lacks the added rows
        index.bind(np.concatenate([vectors, new]))
        assert len(index) == 804 and index.size == 804
        assert index.search(new[2], 2)[0][0].tolist() == [802, 803]

    def test_renumber_follows_a_compacted_matrix(self, tmp_path):
        vectors = twins(600)
        index = self.make(vectors, tmp_path)
        index.remove(np.array([4, 5]))
        keep = np.ones(len(vectors), bool)
        keep[[4, 5]] = False
        new_rows = np.where(keep, np.cumsum(keep) - 1, -1)
        compacted = vectors[keep]
        index.renumber(new_rows, compacted)
        assert len(index) == len(compacted)
        rows, scores = index.search(compacted[10], 2)
        assert rows[0].tolist() == [10, 11]
        np.testing.assert_allclose(scores[0], compacted[rows[0]] @ compacted[10], atol=1e-5)


class TestExactIndex(VectorIndexContract):
    kind = "exact"
    exact = True

    def build(self, vectors, folder):
        return ExactIndex(vectors)

    def test_removed_rows_survive_save_and_load(self, tmp_path):
        vectors = twins(50)
        index = ExactIndex(vectors, removed=np.array([1, 2]))
        entry = index.save(tmp_path, "g1")
        assert entry == {"kind": "exact", "rows": 100, "removed": "g1-removed.npy"}
        assert ExactIndex.load(tmp_path, entry, vectors).live_rows()[:3].tolist() == [0, 3, 4]


class TestHnswIndex(VectorIndexContract):
    """The graph as a writer builds it (read into memory, writable)."""

    kind = "hnsw"

    def build(self, vectors, folder):
        return build_hnsw(vectors, HNSW)

    def test_records_its_parameters_and_reader_additions_are_scored_exactly(self, tmp_path):
        vectors = twins(1500)
        index = self.make(vectors, tmp_path)
        params = index.params
        assert params["kind"] == "hnsw" and params["degree"] == 16
        assert params["search_width"] in HNSW.search_widths
        assert params["recall_at_10"] >= 0.98 and params["queries"] == 100
        entry = index.save(tmp_path, "g1")
        reader = load_vector_index(tmp_path, entry, vectors)  # memory-mapped, read-only
        new = twins(2, seed=5)
        reader.add(np.arange(3000, 3004), new)
        assert reader.params["uncovered"] == 4
        assert reader.search(new[2], 2)[0][0].tolist() == [3002, 3003]
        with pytest.raises(Exception, match="read-only"):
            reader.grow()

    def test_writer_grows_the_graph_and_keeps_unchanged_files(self, tmp_path):
        vectors = twins(1500)
        first = self.make(vectors, tmp_path).save(tmp_path, "g1")
        everything = np.concatenate([vectors, twins(3, seed=9)])
        writer = HnswIndex.load(tmp_path, first, everything, writable=True)
        assert writer.uncovered == 6  # the matrix holds 6 rows the graph lacks
        assert writer.save(tmp_path, "g2", previous=first)["graph"] == first["graph"]
        assert writer.grow() == 6 and writer.uncovered == 0
        grown = writer.save(tmp_path, "g3", previous=first)
        assert grown["graph"] != first["graph"] and grown["nodes"] == 3006
        reader = load_vector_index(tmp_path, grown, everything)
        assert reader.search(everything[3000], 2)[0][0].tolist() == [3000, 3001]


class TestHnswReader(VectorIndexContract):
    """The graph as a reader loads it: its codes memory-mapped, read-only (rows added are
    scored exactly)."""

    kind = "hnsw"

    def build(self, vectors, folder):
        entry = build_hnsw(vectors, HNSW).save(folder, "built")
        index = HnswIndex.load(folder, entry, vectors)
        assert not index.writable
        return index


def test_exact_index_is_the_default_below_min_rows():
    vectors = clustered(100)
    assert isinstance(build_vector_index(vectors, AnnSettings(min_rows=1000)), ExactIndex)
    assert build_vector_index(vectors, AnnSettings(min_rows=50)).kind == "hnsw"
    with pytest.raises(ValueError, match="unknown vector index"):
        AnnSettings(kind="annoy")


def test_every_vector_index_kind_has_a_contract_test():
    tested = {cls.kind for cls in VectorIndexContract.__subclasses__()}
    implementations = {cls.kind for cls in VectorIndex.__subclasses__()}
    assert implementations <= tested
