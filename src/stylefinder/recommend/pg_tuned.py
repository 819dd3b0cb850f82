"""A tuned search space in PostgreSQL: the projection `stylefinder tune` learned, and the
catalog's vectors projected by it, in a table of their own with an HNSW index.

The projection's bytes (projection.npz) are stored in the `projections` table, and the header's
`projection` key names the one queries use ({digest, dim, info}). Its vectors live in
`tuned_<digest>` (item_id, tuned): a table of their own rather than a column of `items`, so
that tuning never rewrites the items' rows (and their embedding index), and a new `tune` fills
its table while queries go on using the old one. `publish` fills the table from a snapshot of
the items, builds its HNSW index, then points the header at it in a writer's commit (queries
reload) and drops the tables no projection uses. The table's rows follow the items: a removed
item's row goes with it (a foreign key, ON DELETE CASCADE), and rows the writers added or
changed since the table was filled (`items.generation` above its `filled_generation`) are
projected by the first reader of a newer generation (`catch_up`), under a lock of its own, so
every replica searches a complete space.

Example:
    >>> publish(catalog, projection)  # doctest: +SKIP
    >>> space = TunedSpace.of(catalog)  # doctest: +SKIP
    >>> catch_up(catalog, space, projection)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.index.pg_tables import HNSW_EF_CONSTRUCTION, HNSW_M, read_generation, vector_type
from stylefinder.recommend.projection import Projection

if TYPE_CHECKING:
    import psycopg

PROJECTION_KEY = "projection"  # the header key naming the projection in use
_BLOCK = 4_096  # items projected per step
_STAGE = "stylefinder_tuned_stage"


@dataclass(frozen=True)
class TunedSpace:
    """The table of one projection's vectors: `tuned_<digest>`, vectors of `dim`."""

    digest: str
    dim: int

    @property
    def table(self) -> str:
        return f"tuned_{self.digest}"

    @property
    def vector_type(self) -> str:
        return vector_type(self.dim)

    @classmethod
    def of(cls, catalog: PgCatalog) -> TunedSpace | None:
        """The space the catalog's header names (None: the catalog is not tuned).

        Example:
            >>> TunedSpace.of(catalog)  # doctest: +SKIP
            TunedSpace(digest='3f2a9c1e0b7d4a55', dim=128)
        """
        named = catalog.state(PROJECTION_KEY)
        if not named:
            return None
        return cls(str(named["digest"]), int(named["dim"]))

    def sql(self, catalog: PgCatalog) -> Any:
        """The table, schema-qualified, as psycopg SQL."""
        from psycopg import sql

        return sql.SQL("{}.{}").format(
            sql.Identifier(catalog.target.schema), sql.Identifier(self.table)
        )


def stored_projection(catalog: PgCatalog, space: TunedSpace) -> Projection:
    """The projection of `space`, from the `projections` table.

    Example:
        >>> stored_projection(catalog, TunedSpace.of(catalog)).dim  # doctest: +SKIP
        128
    """
    from stylefinder.errors import IndexStateError

    with catalog.connection() as conn:
        row = conn.execute(
            _sql(catalog, "SELECT data FROM {projections} WHERE digest = %s"), (space.digest,)
        ).fetchone()
    if row is None:
        raise IndexStateError(f"the catalog's projection {space.digest} is missing: tune again")
    return Projection.from_bytes(bytes(row[0]))


def publish(catalog: PgCatalog, projection: Projection, *, info: dict | None = None) -> TunedSpace:
    """Store `projection`, fill its table from the catalog's items and build its index, then
    make queries use it (a commit) and drop the tables no projection uses any more.

    Example:
        >>> publish(catalog, projection).table  # doctest: +SKIP
        'tuned_3f2a9c1e0b7d4a55'
    """
    from psycopg import sql

    content = projection.to_bytes()
    space = TunedSpace(projection.digest, projection.dim)
    with catalog.connection() as conn, conn.transaction():
        conn.execute(
            _sql(
                catalog,
                "INSERT INTO {projections} (digest, data, dim) VALUES (%s, %s, %s) "
                "ON CONFLICT (digest) DO UPDATE SET data = EXCLUDED.data, filled_generation = 0",
            ),
            (space.digest, content, space.dim),
        )
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(space.sql(catalog)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (item_id text PRIMARY KEY REFERENCES {} (id) ON DELETE CASCADE, "
                "tuned {}({}) NOT NULL)"
            ).format(
                space.sql(catalog),
                catalog.sql("{items}"),
                sql.SQL(space.vector_type),
                sql.Literal(space.dim),
            )
        )
    filled = _fill(catalog, space, projection, since=None)
    with catalog.connection() as conn, conn.transaction():
        conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
        conn.execute(
            sql.SQL(
                "CREATE INDEX ON {} USING hnsw (tuned {}) WITH (m = {}, ef_construction = {})"
            ).format(
                space.sql(catalog),
                sql.SQL(f"{space.vector_type}_cosine_ops"),
                sql.Literal(HNSW_M),
                sql.Literal(HNSW_EF_CONSTRUCTION),
            )
        )
        _set_filled(conn, catalog, space, filled)
    named = {"digest": space.digest, "dim": space.dim, "info": info or projection.info}
    with catalog.writer() as writer:  # queries reload and find the new space
        writer.set_state(PROJECTION_KEY, named)
    catch_up(catalog, space, projection)
    drop_unused(catalog, keep=space.digest)
    return space


def catch_up(catalog: PgCatalog, space: TunedSpace, projection: Projection) -> int:
    """Project the items written since `space` was last filled into its table; returns how
    many (0: it was complete). Readers call it once per generation; concurrent callers wait
    for each other.

    Example:
        >>> catch_up(catalog, TunedSpace.of(catalog), projection)  # doctest: +SKIP
        3
    """
    with catalog.connection() as conn:
        row = conn.execute(
            _sql(catalog, "SELECT filled_generation FROM {projections} WHERE digest = %s"),
            (space.digest,),
        ).fetchone()
        if row is None or int(row[0]) >= read_generation(conn, catalog):
            return 0
    with catalog.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_lock(catalog, space),))
        filled = conn.execute(
            _sql(catalog, "SELECT filled_generation FROM {projections} WHERE digest = %s"),
            (space.digest,),
        ).fetchone()[0]
        generation = read_generation(conn, catalog)
        if int(filled) >= generation:
            return 0  # another reader caught up meanwhile
        count = _project_into(conn, catalog, space, projection, since=int(filled), upto=generation)
        _set_filled(conn, catalog, space, generation)
    return count


def drop_unused(catalog: PgCatalog, *, keep: str | None) -> None:
    """Drop the tuned tables and stored projections other than `keep`'s (None: all)."""
    from psycopg import sql

    with catalog.connection() as conn, conn.transaction():
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE 'tuned\\_%%'",
            (catalog.target.schema,),
        ).fetchall()
        for (table,) in rows:
            if table != (f"tuned_{keep}" if keep else None):
                conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}.{}").format(
                        sql.Identifier(catalog.target.schema), sql.Identifier(table)
                    )
                )
        conn.execute(
            _sql(catalog, "DELETE FROM {projections} WHERE digest IS DISTINCT FROM %s"), (keep,)
        )


def reset(catalog: PgCatalog) -> bool:
    """Stop using the catalog's projection and drop its table; returns whether it had one."""
    had = TunedSpace.of(catalog) is not None
    with catalog.writer() as writer:
        writer.set_state(PROJECTION_KEY, "")
    drop_unused(catalog, keep=None)
    return had


# -- filling -------------------------------------------------------------------------------------


def _fill(
    catalog: PgCatalog, space: TunedSpace, projection: Projection, *, since: int | None
) -> int:
    """Project every item (a snapshot of them) into the space's table; returns the generation
    the snapshot holds."""
    with catalog.connection() as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        generation = read_generation(conn, catalog)
        _project_into(conn, catalog, space, projection, since=since, upto=generation)
    return generation


def _project_into(
    conn: psycopg.Connection,
    catalog: PgCatalog,
    space: TunedSpace,
    projection: Projection,
    *,
    since: int | None,
    upto: int,
) -> int:
    """Project the items of generations `since` < g <= `upto` (all up to `upto` when `since` is
    None) into the space's table, replacing rows already there; returns how many."""
    from psycopg import sql

    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (item_id text, tuned {}({})) ON COMMIT DROP"
        ).format(sql.Identifier(_STAGE), sql.SQL(space.vector_type), sql.Literal(space.dim))
    )
    count = 0
    for ids, vectors in _items_of(conn, catalog, since=since, upto=upto):
        tuned = projection.apply(vectors).astype(np.float32)
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(_STAGE)))
        copy_sql = sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(sql.Identifier(_STAGE))
        with conn.cursor().copy(copy_sql) as copy:
            copy.set_types(["text", space.vector_type])
            for item_id, vector in zip(ids, tuned, strict=True):
                copy.write_row((item_id, _typed(vector, space.vector_type)))
        conn.execute(
            sql.SQL(
                "INSERT INTO {table} (item_id, tuned) SELECT s.item_id, s.tuned FROM {stage} s "
                "JOIN {items} i ON i.id = s.item_id "
                "ON CONFLICT (item_id) DO UPDATE SET tuned = EXCLUDED.tuned"
            ).format(
                table=space.sql(catalog), stage=sql.Identifier(_STAGE), items=catalog.sql("{items}")
            )
        )
        count += len(ids)
    return count


def _items_of(
    conn: psycopg.Connection, catalog: PgCatalog, *, since: int | None, upto: int
) -> Iterator[tuple[list[str], np.ndarray]]:
    """(ids, vectors) of the items of generations (`since`, `upto`], a block at a time."""
    where = "generation <= %s" + ("" if since is None else " AND generation > %s")
    params = [upto] if since is None else [upto, since]
    query = catalog.sql(f"SELECT id, embedding::vector FROM {{items}} WHERE {where} ORDER BY id")
    with conn.cursor("stylefinder_tuned_read", binary=True) as cursor:  # streamed, in blocks
        cursor.execute(query, params)
        while block := cursor.fetchmany(_BLOCK):
            yield [item_id for item_id, _ in block], np.stack([v.to_numpy() for _, v in block])


def _typed(vector: np.ndarray, kind: str):
    from pgvector import HalfVector, Vector

    return HalfVector(vector) if kind == "halfvec" else Vector(vector)


def _set_filled(conn: psycopg.Connection, catalog: PgCatalog, space: TunedSpace, generation: int):
    conn.execute(
        _sql(catalog, "UPDATE {projections} SET filled_generation = %s WHERE digest = %s"),
        (generation, space.digest),
    )


def _sql(catalog: PgCatalog, text: str):
    from psycopg import sql

    schema = sql.Identifier(catalog.target.schema)
    return sql.SQL(text).format(projections=sql.SQL("{}.projections").format(schema))


def _lock(catalog: PgCatalog, space: TunedSpace) -> str:
    return f"{catalog.lock_name}:tuned:{space.digest}"
