"""Writing a PostgreSQL catalog: changes are staged in memory and a commit writes them in ONE
transaction, so an exception or a killed process leaves the previous catalog as it was.

A commit takes the catalog writers' advisory lock (writers wait for each other), bulk-loads the
staged rows with a binary COPY into a temporary table, upserts them into the items (`INSERT ...
SELECT ... ON CONFLICT (id) DO UPDATE`), deletes the removed items and bumps the generation.
A first load of many items into an empty catalog drops the HNSW index and builds it again
after the rows are in, in the same transaction (see `BULK_LOAD_MIN`).

Example:
    >>> with catalog.writer() as writer:  # doctest: +SKIP
    ...     writer.put(item, vector)
    ...     writer.remove("dress-12")
    >>> catalog.generation()  # doctest: +SKIP
    2
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from stylefinder.errors import UnknownItemError
from stylefinder.index.pg_tables import (
    EMBEDDING_INDEX,
    GENERATION_KEY,
    HEADER_KEYS,
    CatalogTables,
    create_hnsw_index,
    read_generation,
)
from stylefinder.types import Item

if TYPE_CHECKING:
    import psycopg

# rows of a first load into an empty catalog from which the HNSW index is built after the rows
# are in rather than kept while they are inserted: 4x faster at 1,000 and at 5,000 rows of
# 1280-d (0.43 s against 1.74 s; 3.1 s against 12.7 s; benchmarks/postgres_backend.py)
BULK_LOAD_MIN = 1_000
LOOKUPS_BEFORE_ALL_IDS = 100
BUILD_MAINTENANCE_WORK_MEM = "1GB"  # HNSW builds are much faster when the graph fits in memory

_STAGE = "stylefinder_stage"
_COLUMNS = "id, path, content_hash, metadata, source, size, mtime_ns, added_at, updated_at"
_COPY_TYPES = [
    "text",
    "text",
    "text",
    "jsonb",
    "text",
    "int8",
    "int8",
    "timestamptz",
    "timestamptz",
    "vector",
]


class PgWriter:
    """Staged puts, removals and state values of one catalog, written by `commit` (also at
    the end of a `with` block that raised nothing; one that raised discards them)."""

    def __init__(self, catalog: CatalogTables, *, bulk_load_min: int | None = None) -> None:
        self.catalog = catalog
        self.bulk_load_min = BULK_LOAD_MIN if bulk_load_min is None else bulk_load_min
        self._puts: dict[str, tuple[Item, np.ndarray | None]] = {}
        self._removals: set[str] = set()
        self._state: dict[str, Any] = {}
        self._asked = 0  # ids looked up one by one; after LOOKUPS_BEFORE_ALL_IDS, all at once
        self._committed_ids: set[str] | None = None
        self.last_commit: dict[str, float | bool] = {}  # what the last commit did, timed

    def __enter__(self) -> PgWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    @property
    def staged(self) -> int:
        """How many changes wait for the next commit."""
        return len(self._puts) + len(self._removals)

    def put(self, item: Item, vector: np.ndarray | None) -> None:
        """Add or replace `item`; `vector=None` keeps the vector the item already has
        (`UnknownItemError` when it has none yet)."""
        dim = self.catalog.header.dim
        if vector is None:
            if item.id in self._puts:
                vector = self._puts[item.id][1]
            elif not self._exists(item.id):
                raise UnknownItemError(f"item {item.id!r} has no vector yet")
        else:
            vector = np.asarray(vector, np.float32).reshape(-1)
            if vector.shape != (dim,) or not np.isfinite(vector).all():
                raise ValueError(f"vector for {item.id!r} must be {dim} finite floats")
        self._removals.discard(item.id)
        self._puts[item.id] = (item, vector)

    def remove(self, item_id: str) -> None:
        """Remove an item (staged until commit); `UnknownItemError` when there is none."""
        staged = self._puts.pop(item_id, None) is not None
        if self._exists(item_id):
            self._removals.add(item_id)
        elif not staged:
            raise UnknownItemError(f"no item {item_id!r} in the catalog")

    def set_state(self, key: str, value: Any) -> None:
        """Record a JSON value under `key` in the catalog's header table (with the next
        commit); read it back with `PgCatalog.state`."""
        if key in HEADER_KEYS or key == GENERATION_KEY:
            raise ValueError(f"{key!r} is part of the catalog's header; choose another key")
        json.dumps(value)  # fails now rather than at commit
        self._state[key] = value

    def discard(self) -> None:
        """Forget the staged changes."""
        self._puts.clear()
        self._removals.clear()
        self._state.clear()

    def commit(self) -> int:
        """Write the staged changes as a new generation in one transaction; returns its number
        (the current one when nothing was staged)."""
        catalog = self.catalog
        if not self.staged and not self._state:
            return catalog.generation()
        timings: dict[str, float | bool] = {}
        started = time.perf_counter()
        with catalog.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (catalog.lock_name,))
            generation = read_generation(conn, catalog, lock=True) + 1
            with_vectors = sum(vector is not None for _, vector in self._puts.values())
            empty = conn.execute(catalog.sql("SELECT NOT EXISTS (SELECT 1 FROM {items})"))
            bulk = bool(empty.fetchone()[0]) and with_vectors >= max(1, self.bulk_load_min)
            if bulk:
                conn.execute(_drop_index(catalog))
            self._copy_staged(conn)
            timings["copy_s"] = time.perf_counter() - started
            self._upsert(conn, generation)
            timings["upsert_s"] = time.perf_counter() - started - timings["copy_s"]
            if self._removals:
                conn.execute(
                    catalog.sql("DELETE FROM {items} WHERE id = ANY(%s)"), (sorted(self._removals),)
                )
            state = {**self._state, GENERATION_KEY: generation}
            conn.cursor().executemany(
                catalog.sql(
                    "INSERT INTO {header} (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                ),
                [(key, json.dumps(value)) for key, value in state.items()],
            )
            if bulk:
                before = time.perf_counter()
                conn.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MAINTENANCE_WORK_MEM}'")
                create_hnsw_index(conn, catalog.target.schema, catalog.header.dim)
                timings["index_build_s"] = time.perf_counter() - before
        timings["total_s"] = time.perf_counter() - started
        timings["bulk_load"] = bulk
        self.last_commit = timings
        self.discard()
        self._committed_ids, self._asked = None, 0
        return generation

    # -- the steps of a commit -------------------------------------------------------------------

    def _copy_staged(self, conn: psycopg.Connection) -> None:
        """The staged items into a temporary table (dropped with the transaction)."""
        conn.execute(
            f"CREATE TEMP TABLE {_STAGE} (id text, path text, content_hash text, metadata jsonb, "
            "source text, size int8, mtime_ns int8, added_at timestamptz, "
            "updated_at timestamptz, embedding vector) ON COMMIT DROP"
        )
        if not self._puts:
            return
        from psycopg.types.json import Jsonb

        now = datetime.now(timezone.utc)
        with conn.cursor().copy(f"COPY {_STAGE} FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_COPY_TYPES)
            for item, vector in self._puts.values():
                added = _moment(item.added_at) or now
                updated = _moment(item.updated_at) or added
                copy.write_row(
                    (
                        item.id,
                        item.path,
                        item.hash,
                        Jsonb(item.metadata),
                        item.source,
                        item.size,
                        item.mtime_ns,
                        added,
                        updated,
                        vector,
                    )
                )

    def _upsert(self, conn: psycopg.Connection, generation: int) -> None:
        """Staged rows with a vector: inserted or replaced; without: metadata updated."""
        catalog = self.catalog
        kind, dim = catalog.vector_type, catalog.header.dim
        assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS.split(", ")[1:])
        conn.execute(
            catalog.sql(
                f"INSERT INTO {{items}} ({_COLUMNS}, embedding, generation) "
                f"SELECT {_COLUMNS}, embedding::{kind}({dim}), %s FROM {_STAGE} "
                "WHERE embedding IS NOT NULL "
                f"ON CONFLICT (id) DO UPDATE SET {assignments}, embedding = EXCLUDED.embedding, "
                "generation = EXCLUDED.generation"
            ),
            (generation,),
        )
        updates = ", ".join(f"{c} = s.{c}" for c in _COLUMNS.split(", ")[1:])
        conn.execute(
            catalog.sql(
                f"UPDATE {{items}} AS i SET {updates}, generation = %s FROM {_STAGE} AS s "
                "WHERE s.embedding IS NULL AND i.id = s.id"
            ),
            (generation,),
        )

    def _exists(self, item_id: str) -> bool:
        """Whether the catalog holds `item_id` (as last committed): one query each for the
        first few ids asked about, then every id read once (an index run removing thousands)."""
        if self._committed_ids is None and self._asked >= LOOKUPS_BEFORE_ALL_IDS:
            self._committed_ids = set(self.catalog.ids())
        if self._committed_ids is not None:
            return item_id in self._committed_ids
        self._asked += 1
        with self.catalog.connection() as conn:
            query = self.catalog.sql("SELECT EXISTS (SELECT 1 FROM {items} WHERE id = %s)")
            return bool(conn.execute(query, (item_id,)).fetchone()[0])


def _drop_index(catalog: CatalogTables):
    from psycopg import sql

    return sql.SQL("DROP INDEX {}.{}").format(
        sql.Identifier(catalog.target.schema), sql.Identifier(EMBEDDING_INDEX)
    )


def _moment(text: str) -> datetime | None:
    """An item's ISO timestamp as a datetime (None when it has none); naive ones are UTC."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
