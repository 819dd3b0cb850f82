"""A catalog in PostgreSQL with pgvector: the header as rows, items with JSONB metadata and one
vector each, searched through an HNSW index (see `stylefinder.index.pg_search`) and written by
`stylefinder.index.pg_writer` in one transaction per commit.

The vector column's type is fixed when the catalog is created: `vector(dim)`, or `halfvec(dim)`
above 2,000 dimensions (pgvector's HNSW index takes `vector` up to 2,000 and `halfvec` up to
4,000), with an HNSW index for cosine distance (m=16, ef_construction=128).

Example:
    >>> url = "postgresql:///shop?schema=spring"
    >>> catalog = PgCatalog.open_or_create(url, space)  # doctest: +SKIP
    >>> with catalog.writer() as writer:  # doctest: +SKIP
    ...     writer.put(item, vector)
    >>> len(catalog), catalog.generation()  # doctest: +SKIP
    (1, 1)
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from stylefinder.errors import IndexStateError, UnknownItemError
from stylefinder.index.header import IndexHeader
from stylefinder.index.pg_connect import DatabaseTarget, database_failure, open_pool, parse_url
from stylefinder.index.pg_schema import LATEST, migrate, schema_version
from stylefinder.index.pg_tables import (
    GENERATION_KEY,
    HEADER_KEYS,
    ITEM_COLUMNS,
    create_hnsw_index,
    item_from_row,
    read_generation,
    vector_type,
)
from stylefinder.types import EmbeddingSpace, Item

_CHUNK = 10_000  # ids asked for in one `= ANY(...)` query

if TYPE_CHECKING:
    import psycopg

    from stylefinder.index.pg_writer import PgWriter


class PgCatalog:
    """A catalog in one schema of a PostgreSQL database. `create` makes one, `open` opens one;
    both hold a connection pool until `close` (or the end of a `with` block)."""

    def __init__(self, target: DatabaseTarget, header: IndexHeader, pool: Any) -> None:
        self.target, self.header, self._pool = target, header, pool
        self.vector_type = vector_type(header.dim)
        self._types: dict[str, Any] | None = None
        self._registered: weakref.WeakSet = weakref.WeakSet()
        self.match_counts: dict[tuple, int] = {}  # (generation, where, params) -> rows, capped

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def create(cls, target: DatabaseTarget | str, space: EmbeddingSpace) -> PgCatalog:
        """Create an empty catalog for vectors of `space` in the target's schema (made or
        migrated as needed); `IndexStateError` when the schema already holds one.

        Example:
            >>> PgCatalog.create("postgresql:///shop?schema=spring", space)  # doctest: +SKIP
            PgCatalog(postgresql:///shop, schema 'spring')
        """
        from psycopg import sql

        target = _target(target)
        header = IndexHeader.for_space(space)
        pool = open_pool(target)
        try:
            with pool.connection() as conn:
                migrate(conn, target.schema)
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_lock(target),))
                    if _read_header_rows(conn, target.schema):
                        raise IndexStateError(
                            f"a catalog already exists in schema {target.schema!r} at "
                            f"{target.redacted}"
                        )
                    rows = {**asdict(header), GENERATION_KEY: 0}
                    conn.cursor().executemany(
                        sql.SQL("INSERT INTO {}.header (key, value) VALUES (%s, %s)").format(
                            sql.Identifier(target.schema)
                        ),
                        [(key, json.dumps(value)) for key, value in rows.items()],
                    )
                    kind = vector_type(space.dim)
                    conn.execute(
                        sql.SQL(
                            "ALTER TABLE {}.items ALTER COLUMN embedding TYPE {}({}) "
                            "USING embedding::{}({})"
                        ).format(
                            sql.Identifier(target.schema),
                            sql.SQL(kind),
                            sql.Literal(space.dim),
                            sql.SQL(kind),
                            sql.Literal(space.dim),
                        )
                    )
                    create_hnsw_index(conn, target.schema, space.dim)
        except BaseException:
            pool.close()
            raise
        return cls(target, header, pool)

    @classmethod
    def open(cls, target: DatabaseTarget | str) -> PgCatalog:
        """Open the catalog in the target's schema (migrating an older schema), or raise
        `IndexStateError` saying how to build one.

        Example:
            >>> PgCatalog.open("postgresql:///shop?schema=spring").header.dim  # doctest: +SKIP
            1280
        """
        target = _target(target)
        pool = open_pool(target)
        try:
            with pool.connection() as conn:
                version = schema_version(conn, target.schema)
                rows = _read_header_rows(conn, target.schema) if version else {}
                if "dim" not in rows:
                    url = _url_with_schema(target)
                    raise IndexStateError(
                        f"no catalog in schema {target.schema!r} at {target.redacted}; build one "
                        f"with `stylefinder index CATALOG_DIR --index {url}`"
                    )
                if version < LATEST:
                    migrate(conn, target.schema)
            header = IndexHeader(**{k: v for k, v in rows.items() if k in HEADER_KEYS})
        except BaseException:
            pool.close()
            raise
        return cls(target, header, pool)

    @classmethod
    def exists(cls, target: DatabaseTarget | str) -> bool:
        """True when the target's schema holds a catalog (its header)."""
        from stylefinder.index.pg_connect import connect

        target = _target(target)
        with connect(target) as conn:
            if not schema_version(conn, target.schema):
                return False
            return "dim" in _read_header_rows(conn, target.schema)

    @classmethod
    def open_or_create(cls, target: DatabaseTarget | str, space: EmbeddingSpace) -> PgCatalog:
        """Open the target's catalog if there is one (it must match `space`), else create it."""
        target = _target(target)
        if not cls.exists(target):
            return cls.create(target, space)
        catalog = cls.open(target)
        try:
            catalog.check_space(space)
        except IndexStateError:
            catalog.close()
            raise
        return catalog

    def check_space(self, space: EmbeddingSpace) -> None:
        """Raise `IndexStateError` unless vectors of `space` are comparable with this catalog's."""
        if space != self.header.space:
            raise IndexStateError(
                f"the catalog in schema {self.target.schema!r} at {self.target.redacted} was "
                f"built with {self.header.space.describe()}, but the query uses "
                f"{space.describe()}. Use the same backbone and pooling, or build a new catalog "
                "in another schema."
            )

    def close(self) -> None:
        """Close the connection pool."""
        self._pool.close()

    def __enter__(self) -> PgCatalog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PgCatalog({self.target.redacted}, schema {self.target.schema!r})"

    # -- connections -----------------------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection (autocommit) that reads and writes pgvector values. The
        server's failures (down, connection dropped, no free connection in time, a statement
        timeout) come out as `DatabaseError`; the pool reconnects once the server is back."""
        import psycopg

        try:
            with self._pool.connection() as conn:
                if conn not in self._registered:
                    self._register(conn)
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise database_failure(error, self.target) from error

    def _register(self, conn: psycopg.Connection) -> None:
        from pgvector.psycopg.halfvec import register_halfvec_info
        from pgvector.psycopg.vector import register_vector_info
        from psycopg.types import TypeInfo

        if self._types is None:  # looked up once, registered on each new connection
            self._types = {name: TypeInfo.fetch(conn, name) for name in ("vector", "halfvec")}
        register_vector_info(conn, self._types["vector"])
        register_halfvec_info(conn, self._types["halfvec"])
        self._registered.add(conn)

    def sql(self, text: str) -> Any:
        """`text` as a psycopg `sql.Composed` with `{items}` and `{header}` naming this
        catalog's tables (other braces must be doubled)."""
        from psycopg import sql

        schema = sql.Identifier(self.target.schema)
        return sql.SQL(text).format(
            items=sql.SQL("{}.items").format(schema), header=sql.SQL("{}.header").format(schema)
        )

    @property
    def lock_name(self) -> str:
        """The text whose hash names the advisory lock the catalog's writers take."""
        return _lock(self.target) + ":writer"

    # -- reading ---------------------------------------------------------------------------------

    def generation(self) -> int:
        """The committed generation number (changes with every commit); one indexed read."""
        with self.connection() as conn:
            return read_generation(conn, self)

    def state(self, key: str) -> Any:
        """A value a writer recorded with `set_state` (None when there is none)."""
        with self.connection() as conn:
            row = conn.execute(
                self.sql("SELECT value FROM {header} WHERE key = %s"), (key,)
            ).fetchone()
        return None if row is None else row[0]

    def __len__(self) -> int:
        with self.connection() as conn:
            return int(conn.execute(self.sql("SELECT count(*) FROM {items}")).fetchone()[0])

    def ids(self) -> list[str]:
        """Every item id, sorted."""
        with self.connection() as conn:
            rows = conn.execute(self.sql("SELECT id FROM {items} ORDER BY id")).fetchall()
        return [item_id for (item_id,) in rows]

    def item(self, item_id: str) -> Item:
        """The item `item_id`, or `UnknownItemError`."""
        return self.items([item_id])[0]

    def items(self, ids: Sequence[str]) -> list[Item]:
        """The items of `ids`, in that order; `UnknownItemError` names the first one missing."""
        found: dict[str, Item] = {}
        with self.connection() as conn:
            for start in range(0, len(ids), _CHUNK):
                query = self.sql(f"SELECT {ITEM_COLUMNS} FROM {{items}} WHERE id = ANY(%s)")
                for row in conn.execute(query, (list(ids[start : start + _CHUNK]),)):
                    found[row[0]] = item_from_row(row)
        return [_found(found, item_id, self) for item_id in ids]

    def vectors_of(self, ids: Sequence[str]) -> np.ndarray:
        """The vectors of `ids` as a float32 (len(ids), dim) array, in that order;
        `UnknownItemError` names the first id missing."""
        found: dict[str, np.ndarray] = {}
        with self.connection() as conn:
            cursor = conn.cursor(binary=True)
            for start in range(0, len(ids), _CHUNK):
                query = self.sql("SELECT id, embedding::vector FROM {items} WHERE id = ANY(%s)")
                cursor.execute(query, (list(ids[start : start + _CHUNK]),))
                for item_id, vector in cursor:
                    found[item_id] = vector.to_numpy()
        matrix = np.empty((len(ids), self.header.dim), np.float32)
        for row, item_id in enumerate(ids):
            matrix[row] = _found(found, item_id, self)
        return matrix

    # -- writing ---------------------------------------------------------------------------------

    def writer(self, *, bulk_load_min: int | None = None) -> PgWriter:
        """A writer staging puts and removals until `commit` (the end of its `with` block);
        see `stylefinder.index.pg_writer.PgWriter`.

        Example:
            >>> with catalog.writer() as writer:  # doctest: +SKIP
            ...     writer.put(item, vector)
        """
        from stylefinder.index.pg_writer import PgWriter

        return PgWriter(self, bulk_load_min=bulk_load_min)


def _found(found: dict, item_id: str, catalog: PgCatalog):
    try:
        return found[item_id]
    except KeyError:
        raise UnknownItemError(
            f"no item {item_id!r} in the catalog in schema {catalog.target.schema!r}"
        ) from None


def _read_header_rows(conn: psycopg.Connection, schema: str) -> dict[str, Any]:
    from psycopg import sql

    rows = conn.execute(sql.SQL("SELECT key, value FROM {}.header").format(sql.Identifier(schema)))
    return dict(rows.fetchall())


def _target(target: DatabaseTarget | str) -> DatabaseTarget:
    return target if isinstance(target, DatabaseTarget) else parse_url(target)


def _lock(target: DatabaseTarget) -> str:
    return f"stylefinder:{target.schema}"


def _url_with_schema(target: DatabaseTarget) -> str:
    separator = "&" if "?" in target.redacted else "?"
    return f"{target.redacted}{separator}schema={target.schema}"
