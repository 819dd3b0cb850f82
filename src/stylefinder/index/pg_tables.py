"""The tables of a PostgreSQL catalog as its readers and writers share them: the vector column's
type, the HNSW index, the header's generation row and the item columns.

Example:
    >>> vector_type(1280), vector_type(4096)
    ('vector', 'halfvec')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from stylefinder.index.header import IndexHeader
from stylefinder.types import Item

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import psycopg

    from stylefinder.index.pg_connect import DatabaseTarget


class CatalogTables(Protocol):
    """What a writer needs of a catalog (`PgCatalog` is one)."""

    target: DatabaseTarget
    header: IndexHeader
    vector_type: str
    lock_name: str

    def connection(self) -> AbstractContextManager[psycopg.Connection]: ...

    def sql(self, text: str) -> Any: ...

    def generation(self) -> int: ...


MAX_VECTOR_DIM = 2000  # pgvector's HNSW index: vector up to 2,000 dims, halfvec up to 4,000
# pgvector's default ef_construction, 64, built graphs of uneven quality on 100,000 x 1280-d
# clustered vectors; 128 costs a longer build for a steady recall (benchmarks/pg_hnsw_build.py)
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 128
EMBEDDING_INDEX = "items_embedding"
GENERATION_KEY = "generation"
HEADER_KEYS = frozenset(field.name for field in fields(IndexHeader))
ITEM_COLUMNS = "id, path, content_hash, metadata, source, size, mtime_ns, added_at, updated_at"


def vector_type(dim: int) -> str:
    """The column type of a catalog's vectors: "vector", or "halfvec" above 2,000 dims.

    Example:
        >>> vector_type(1280), vector_type(2048)
        ('vector', 'halfvec')
    """
    return "vector" if dim <= MAX_VECTOR_DIM else "halfvec"


def create_hnsw_index(
    conn: psycopg.Connection,
    schema: str,
    dim: int,
    *,
    m: int = HNSW_M,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
) -> None:
    """Create the catalog's HNSW index for cosine distance (in the caller's transaction)."""
    from psycopg import sql

    kind = vector_type(dim)
    conn.execute(
        sql.SQL(
            "CREATE INDEX {} ON {}.items USING hnsw (embedding {}) "
            "WITH (m = {}, ef_construction = {})"
        ).format(
            sql.Identifier(EMBEDDING_INDEX),
            sql.Identifier(schema),
            sql.SQL(f"{kind}_cosine_ops"),
            sql.Literal(m),
            sql.Literal(ef_construction),
        )
    )


def read_generation(conn: psycopg.Connection, catalog: CatalogTables, *, lock: bool = False) -> int:
    """The catalog's committed generation (`lock`: FOR UPDATE, in a writer's transaction)."""
    query = "SELECT value FROM {header} WHERE key = %s" + (" FOR UPDATE" if lock else "")
    row = conn.execute(catalog.sql(query), (GENERATION_KEY,)).fetchone()
    return int(row[0]) if row else 0


def item_from_row(row: Sequence) -> Item:
    """The item of a row of ITEM_COLUMNS."""
    item_id, path, digest, metadata, source, size, mtime_ns, added_at, updated_at = row
    return Item(
        item_id,
        path,
        digest,
        size=size,
        mtime_ns=mtime_ns,
        metadata=metadata,
        added_at=_iso(added_at),
        updated_at=_iso(updated_at),
        source=source,
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")
