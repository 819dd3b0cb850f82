"""pgvector search in a PostgreSQL catalog keeps the searches of `SearchContract`, as the index
directory's vector indexes do: as `pg_search.search` chooses its way (HNSW with an iterative
scan, or an exact scan of few rows), and through the HNSW index only. Rows are item numbers:
row r is item "r-<r>"; `allowed` becomes a SQL filter on the ids, `excluded` the ids left out."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("psycopg")
from psycopg import sql
from search_contract import SearchContract

from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.index.pg_search import search
from stylefinder.types import EmbeddingSpace, Item


class PgvectorSearch:
    """A catalog's `pg_search.search`, answering as a `VectorIndex` searches."""

    def __init__(self, catalog: PgCatalog, rows: int, *, exact: bool | None) -> None:
        self.catalog, self.rows, self.exact = catalog, rows, exact

    def __len__(self) -> int:
        return self.rows

    def search(self, queries, k: int, *, allowed=None, excluded=None):
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        where = None
        if allowed is not None:
            passing = np.flatnonzero(allowed) if np.asarray(allowed).dtype == bool else allowed
            where = (sql.SQL("id = ANY(%s)"), [[f"r-{row}" for row in passing]])
        if excluded is not None and np.asarray(excluded).dtype == bool:
            excluded = np.flatnonzero(excluded)
        left_out = [f"r-{row}" for row in ([] if excluded is None else excluded)]
        rows = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        for n, query in enumerate(queries):
            hits = search(
                self.catalog, query, k, where=where, exclude_ids=left_out, exact=self.exact
            )
            rows[n, : len(hits)] = [int(item.id[2:]) for item, _ in hits]
            scores[n, : len(hits)] = [score for _, score in hits]
        return rows, scores


class PgvectorContract(SearchContract):
    way: bool | None

    @pytest.fixture(autouse=True)
    def _database(self, postgres_url, request):
        schema = "s_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:20]
        self.url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"
        self.catalogs: list[PgCatalog] = []
        yield
        for catalog in self.catalogs:
            catalog.close()

    def build(self, vectors, folder):
        space = EmbeddingSpace("contract", "gem", "none", vectors.shape[1])
        catalog = PgCatalog.create(self.url, space)
        self.catalogs.append(catalog)
        with catalog.writer(bulk_load_min=1) as writer:  # the HNSW index built after the rows
            for row, vector in enumerate(vectors):
                writer.put(Item(f"r-{row}", f"{row}.png", f"h{row}"), vector)
        return PgvectorSearch(catalog, len(vectors), exact=self.way)


class TestPgvectorSearch(PgvectorContract):
    """As the product searches: the way chosen by how many rows the filter passes."""

    kind = "pgvector"
    way = None


class TestPgvectorHnswOnly(PgvectorContract):
    """Through the HNSW index (iterative scan) even where few rows pass."""

    kind = "pgvector-hnsw"
    way = False
