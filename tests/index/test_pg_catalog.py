"""A catalog in a real PostgreSQL server with pgvector: header, writes, atomic commits, search."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("psycopg")

from psycopg import sql

from stylefinder.errors import DatabaseError, IndexStateError, UnknownItemError
from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.index.pg_search import (
    EXACT_MAX_ROWS,
    NARROW_EXACT_MAX_ROWS,
    scan_exactly,
    search,
    search_query,
    settings,
)
from stylefinder.types import EmbeddingSpace, Item

SPACE = EmbeddingSpace("test-backbone", "gem", "w0", 8)


@pytest.fixture
def url(postgres_url, request) -> str:
    schema = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:60]
    return f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"


@pytest.fixture
def catalog(url):
    with PgCatalog.create(url, SPACE) as catalog:
        yield catalog


def _unit(rng: np.random.Generator, n: int, dim: int, *, clusters: int = 0) -> np.ndarray:
    """Random unit vectors; with `clusters`, around that many random centres (as embeddings
    of a catalog are: in 2,048 uniform random dims every point is about as far as any other)."""
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    if clusters:
        centres = rng.normal(size=(clusters, dim)).astype(np.float32)
        vectors = centres[rng.integers(clusters, size=n)] + 0.6 * vectors
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _item(n: int, **metadata) -> Item:
    return Item(f"item-{n:04d}", f"images/{n}.png", f"hash-{n}", size=n, metadata=metadata)


def _state(catalog: PgCatalog) -> tuple:
    ids = catalog.ids()
    return catalog.generation(), ids, catalog.items(ids), catalog.vectors_of(ids).tobytes()


def test_create_open_header_and_space(url):
    with pytest.raises(IndexStateError, match=r"stylefinder index CATALOG_DIR --index postgres"):
        PgCatalog.open(url)
    assert not PgCatalog.exists(url)
    with PgCatalog.create(url, SPACE) as created:
        assert (created.header.space, len(created), created.generation()) == (SPACE, 0, 0)
    with pytest.raises(IndexStateError, match="already exists"):
        PgCatalog.create(url, SPACE)
    with PgCatalog.open(url) as opened, PgCatalog.open_or_create(url, SPACE) as again:
        assert opened.header == created.header == again.header
        assert opened.header.dim == 8 and opened.vector_type == "vector"
        other = EmbeddingSpace("other-backbone", "gem", "w0", 8)
        with pytest.raises(IndexStateError, match=r"was built with test-backbone.*other-backbone"):
            opened.check_space(other)
        with pytest.raises(IndexStateError, match="built with"):
            PgCatalog.open_or_create(url, other)
        with opened.connection() as conn:
            column = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attname = 'embedding'",
                (f"{opened.target.schema}.items",),
            ).fetchone()[0]
            index = conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
                (opened.target.schema, "items_embedding"),
            ).fetchone()[0]
    assert column == "vector(8)"
    assert "hnsw (embedding vector_cosine_ops)" in index and "m='16'" in index
    assert "ef_construction='128'" in index


def test_put_replace_remove_commit_round_trip(catalog):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3, 8)).astype(np.float32)
    items = [
        _item(0, category="Dress", price=49, colours="red,navy"),
        _item(1, category="Coat", price="120"),
        Item("item-0002", "up/2.png", "h2", source="api", added_at="2026-12-01T10:00:00+00:00"),
    ]
    with catalog.writer() as writer:
        for item, vector in zip(items, vectors, strict=True):
            writer.put(item, vector)
        writer.set_state("catalog_root", "/data/shop")
    assert (catalog.generation(), len(catalog), catalog.ids()) == (1, 3, [i.id for i in items])
    got = catalog.item("item-0000")
    assert (got.metadata, got.path, got.hash, got.size) == (
        items[0].metadata,
        "images/0.png",
        "hash-0",
        0,
    )
    assert catalog.item("item-0002").added_at == "2026-12-01T10:00:00+00:00"
    assert catalog.item("item-0002").source == "api"
    np.testing.assert_allclose(catalog.vectors_of([i.id for i in items]), vectors, atol=1e-6)
    assert catalog.state("catalog_root") == "/data/shop"

    with catalog.writer() as writer:
        writer.put(items[0].replace(metadata={"category": "Skirt"}), None)  # keeps its vector
        writer.put(items[1], -vectors[1])  # re-embedded
        writer.remove("item-0002")
        with pytest.raises(UnknownItemError):
            writer.remove("no-such-item")
        with pytest.raises(UnknownItemError):
            writer.put(_item(9), None)  # no vector yet
        with pytest.raises(ValueError, match="8 finite floats"):
            writer.put(_item(9), np.ones(3))
    assert (catalog.generation(), catalog.ids()) == (2, ["item-0000", "item-0001"])
    assert catalog.item("item-0000").metadata == {"category": "Skirt"}
    np.testing.assert_allclose(
        catalog.vectors_of(["item-0000", "item-0001"]), [vectors[0], -vectors[1]], atol=1e-6
    )
    with pytest.raises(UnknownItemError, match="item-0002"):
        catalog.item("item-0002")
    with pytest.raises(UnknownItemError):
        catalog.vectors_of(["item-0000", "item-0002"])
    with catalog.writer() as writer:
        pass  # nothing staged: no new generation
    assert catalog.generation() == 2


def test_an_exception_leaves_the_catalog_as_it_was(catalog, monkeypatch):
    rng = np.random.default_rng(2)
    with catalog.writer() as writer:
        for n in range(20):
            writer.put(_item(n, category="Dress"), rng.normal(size=8))
    before = _state(catalog)
    with pytest.raises(RuntimeError, match="in the block"), catalog.writer() as writer:
        writer.put(_item(99), rng.normal(size=8))
        writer.remove("item-0003")
        raise RuntimeError("in the block")
    assert _state(catalog) == before

    from stylefinder.index import pg_writer

    def fail_after_writing(self, conn, generation):  # the rows are in, then the commit fails
        original(self, conn, generation)
        assert conn.execute(catalog.sql("SELECT count(*) FROM {items}")).fetchone()[0] == 21
        raise RuntimeError("during the commit")

    original = pg_writer.PgWriter._upsert
    monkeypatch.setattr(pg_writer.PgWriter, "_upsert", fail_after_writing)
    writer = catalog.writer()
    writer.put(_item(99), rng.normal(size=8))
    writer.put(_item(3, category="Coat"), None)
    writer.set_state("note", "x")
    with pytest.raises(RuntimeError, match="during the commit"):
        writer.commit()
    assert _state(catalog) == before and catalog.state("note") is None


_KILLED_WRITER = """
import sys, numpy as np
from stylefinder.index import pg_writer
from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.types import Item

def hang_after_writing(self, conn, generation):
    original(self, conn, generation)
    print("rows written, not committed", flush=True)
    sys.stdin.read()  # until killed

original = pg_writer.PgWriter._upsert
pg_writer.PgWriter._upsert = hang_after_writing
catalog = PgCatalog.open(sys.argv[1])
with catalog.writer(bulk_load_min=1) as writer:
    for n in range(3000):
        writer.put(Item(f"new-{n}", "x.png", "h"), np.ones(8, np.float32))
    writer.remove("item-0001")
"""


def test_a_writer_killed_mid_commit_leaves_the_catalog_as_it_was(url, catalog):
    rng = np.random.default_rng(3)
    with catalog.writer() as writer:
        for n in range(10):
            writer.put(_item(n), rng.normal(size=8))
    before = _state(catalog)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready and child.stdout.readline().strip() == b"rows written, not committed"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert _state(catalog) == before
    with catalog.writer() as writer:  # the lock went with the killed writer's session
        writer.remove("item-0001")
    assert catalog.generation() == before[0] + 1 and "item-0001" not in catalog.ids()


def test_a_statement_timeout_is_a_clear_database_error(url, catalog):
    with PgCatalog.open(url + "&options=-c%20statement_timeout%3D200") as slow:
        with (
            pytest.raises(DatabaseError, match="statement timeout") as error,
            slow.connection() as conn,
        ):
            conn.execute("SELECT pg_sleep(3)")
        assert "check that the server is up" in str(error.value)
        with slow.connection() as conn:  # the pool's connection still works
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_two_catalog_objects_see_each_others_commits(url, catalog):
    with PgCatalog.open(url) as other:
        assert other.generation() == catalog.generation() == 0
        with other.writer() as writer:
            writer.put(_item(1), np.ones(8))
        assert catalog.generation() == 1 and catalog.ids() == ["item-0001"]
        with catalog.writer() as writer:
            writer.remove("item-0001")
        assert other.generation() == 2 and len(other) == 0


def test_writers_wait_for_each_other(url, catalog):
    from concurrent.futures import ThreadPoolExecutor

    def write(first: int) -> int:
        with PgCatalog.open(url) as own, own.writer() as writer:
            for n in range(first, first + 300):
                writer.put(_item(n), np.ones(8))
        return writer.last_commit["total_s"]

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(write, [0, 300]))
    assert catalog.generation() == 2 and len(catalog) == 600


def test_many_removals_are_checked_against_the_committed_ids(catalog):
    from stylefinder.index import pg_writer

    with catalog.writer() as writer:
        for n in range(pg_writer.LOOKUPS_BEFORE_ALL_IDS + 20):
            writer.put(_item(n), np.ones(8))
    with catalog.writer() as writer:
        for n in range(pg_writer.LOOKUPS_BEFORE_ALL_IDS + 20):
            writer.remove(f"item-{n:04d}")  # the last ones checked in the ids read at once
        with pytest.raises(UnknownItemError):
            writer.remove("item-9999")  # never in the catalog: not in the ids read at once
        writer.put(_item(5), np.ones(8))
    assert catalog.ids() == ["item-0005"]


def _plan(catalog, vector, k, where=None, exact=False) -> str:
    query, params = search_query(catalog, vector, k, where=where, exact=exact)
    with catalog.connection() as conn, conn.transaction():
        for setting in settings(exact=exact, filtered=where is not None):
            conn.execute(setting)
        return json.dumps(
            conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params).fetchone()
        )


@pytest.mark.parametrize("dim", [8, 2048])
def test_search_agrees_with_exact_search(url, dim, report):
    rng = np.random.default_rng(4)
    n = 2000
    vectors = _unit(rng, n, dim, clusters=50)
    category = rng.permutation(n)[: n // 20]  # a 5% category
    rare = set(category.tolist())
    space = EmbeddingSpace("test-backbone", "gem", "w0", dim)
    with PgCatalog.create(url, space) as catalog:
        assert catalog.vector_type == ("vector" if dim <= 2000 else "halfvec")
        with catalog.connection() as conn:
            column = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attname = 'embedding'",
                (f"{catalog.target.schema}.items",),
            ).fetchone()[0]
        assert column == f"{catalog.vector_type}({dim})"
        with catalog.writer(bulk_load_min=1) as writer:
            for row in range(n):
                writer.put(_item(row, kind="rare" if row in rare else "common"), vectors[row])
        assert writer.last_commit["bulk_load"] is True
        stored = catalog.vectors_of([f"item-{row:04d}" for row in range(n)])
        np.testing.assert_allclose(stored, vectors, atol=1e-6 if dim <= 2000 else 1e-3)
        queries = vectors[rng.integers(n, size=20)] + _unit(rng, 20, dim) * 0.5  # near items
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        recalls = []
        for query in queries:
            hits = search(catalog, query, 10, exact=False)
            exact = np.argsort(-(vectors @ query))[:10]
            found = [int(item.id.split("-")[1]) for item, _ in hits]
            recalls.append(len(set(found) & set(exact.tolist())) / 10)
            scores = [score for _, score in hits]
            assert scores == sorted(scores, reverse=True)
            np.testing.assert_allclose(
                scores, stored[found] @ query, atol=1e-5 if dim <= 2000 else 1e-3
            )
        report(f"pg search recall@10 ({dim}-d, 2,000 items)", f"{np.mean(recalls):.3f}")
        assert np.mean(recalls) >= 0.95
        assert "Index Scan" in _plan(catalog, queries[0], 10) and "items_embedding" in _plan(
            catalog, queries[0], 10
        )
        assert "items_embedding" not in _plan(catalog, queries[0], 10, exact=True)
        hits = search(catalog, queries[0], 10, exact=True)
        assert [int(item.id.split("-")[1]) for item, _ in hits] == list(
            np.argsort(-(stored @ queries[0]))[:10]
        )

        where = (sql.SQL("metadata ->> 'kind' = %s"), ["rare"])
        for exact in (False, True):  # through the index (iterative scan) and exactly
            hits = search(catalog, queries[0], 10, where=where, exact=exact)
            assert len(hits) == 10 and {item.metadata["kind"] for item, _ in hits} == {"rare"}
        plan = _plan(catalog, queries[0], 10, where=where, exact=False)
        assert "items_embedding" in plan and "Seq Scan" not in plan
        assert "items_embedding" not in _plan(catalog, queries[0], 10, where=where, exact=True)
        for _ in range(12):  # past psycopg's and the server's thresholds for prepared plans
            assert len(search(catalog, queries[0], 10, where=where, exact=False)) == 10
        assert len(search(catalog, queries[0], 10, where=where, exact=True)) == 10
        best_rare = sorted(rare, key=lambda row: -(vectors[row] @ queries[0]))[:10]
        hits = search(catalog, queries[0], 10, where=where)  # 100 rows: scored exactly
        assert [int(item.id.split("-")[1]) for item, _ in hits] == best_rare

        excluded = [item.id for item, _ in hits[:3]]
        again = search(catalog, queries[0], 10, where=where, exclude_ids=excluded)
        assert [item.id for item, _ in again][:7] == [item.id for item, _ in hits[3:]]
        assert not set(excluded) & {item.id for item, _ in again}


def test_narrow_filters_are_scored_exactly_and_wide_ones_through_the_index():
    assert scan_exactly(EXACT_MAX_ROWS, 0.9)  # few rows, whatever their share
    assert not scan_exactly(EXACT_MAX_ROWS + 1, 0.11)  # many rows, a share the index finds
    # 1% of 100,000 items: the index would need over 1,000 candidates to find 10 of them
    assert scan_exactly(1_031, 0.0103)
    assert not scan_exactly(NARROW_EXACT_MAX_ROWS + 1, 0.01)  # too many rows to score


def test_search_small_catalog_and_edge_cases(catalog):
    assert search(catalog, np.ones(8), 5) == []
    with catalog.writer() as writer:
        writer.put(_item(1), np.eye(8)[0])
        writer.put(_item(2), np.eye(8)[1])
    hits = search(catalog, np.eye(8)[0], 5)
    assert [(item.id, round(score, 6)) for item, score in hits] == [
        ("item-0001", 1.0),
        ("item-0002", 0.0),
    ]
    assert search(catalog, np.eye(8)[0], 0) == []
    with pytest.raises(ValueError, match="8 dims"):
        search(catalog, np.ones(3), 5)


def test_search_waits_for_no_one(catalog):
    """A search does not wait for a writer's open transaction (MVCC): it sees the last commit."""
    with catalog.writer() as writer:
        writer.put(_item(1), np.eye(8)[0])
    with catalog.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (catalog.lock_name,))
        conn.execute(catalog.sql("DELETE FROM {items}"))
        started = time.perf_counter()
        assert [item.id for item, _ in search(catalog, np.eye(8)[0], 3)] == ["item-0001"]
        assert time.perf_counter() - started < 5
