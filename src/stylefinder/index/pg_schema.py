"""The tables of a catalog in PostgreSQL, created and migrated by versioned migrations.

Each migration runs in one transaction with its version recorded in `schema_migrations`, under
an advisory lock per schema, so a killed migration leaves the previous schema and concurrent
openers wait for each other instead of racing. The vector column's dimension is the
backbone's; it is fixed when a catalog's first index run writes its header.

Example:
    >>> with connect(parse_url(url)) as conn:  # doctest: +SKIP
    ...     migrate(conn, "shop")
    [1]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stylefinder.errors import DatabaseError
from stylefinder.index.pg_connect import require_vector

if TYPE_CHECKING:
    import psycopg

# (version, what it does, statements); `{schema}` is the catalog's schema, quoted
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "header, items with vectors and JSONB metadata, shoppers' events and tokens",
        """
        CREATE TABLE {schema}.header (
            key text PRIMARY KEY,
            value jsonb NOT NULL
        );
        CREATE TABLE {schema}.items (
            id text PRIMARY KEY,
            path text NOT NULL,
            content_hash text NOT NULL,
            metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            embedding vector NOT NULL,
            generation bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX items_metadata ON {schema}.items USING gin (metadata jsonb_path_ops);
        CREATE INDEX items_content_hash ON {schema}.items (content_hash);
        CREATE TABLE {schema}.events (
            id bigserial PRIMARY KEY,
            user_id text NOT NULL,
            item_id text NOT NULL,
            kind text NOT NULL,
            at double precision NOT NULL,
            weight double precision
        );
        CREATE INDEX events_user ON {schema}.events (user_id, at);
        CREATE INDEX events_item ON {schema}.events (item_id);
        CREATE TABLE {schema}.tokens (
            user_id text PRIMARY KEY,
            token_hash text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        2,
        "items keep what the directory's manifest keeps; shoppers and their tokens in users",
        """
        ALTER TABLE {schema}.items
            ADD COLUMN source text NOT NULL DEFAULT 'catalog',
            ADD COLUMN size bigint NOT NULL DEFAULT 0,
            ADD COLUMN mtime_ns bigint NOT NULL DEFAULT 0,
            ADD COLUMN added_at timestamptz NOT NULL DEFAULT now();
        CREATE TABLE {schema}.users (
            id text PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now(),
            token_hash text,
            token_created_at timestamptz
        );
        INSERT INTO {schema}.users (id, token_hash, token_created_at)
            SELECT user_id, token_hash, created_at FROM {schema}.tokens;
        DROP TABLE {schema}.tokens;
        UPDATE {schema}.events SET weight = 1 WHERE weight IS NULL;
        ALTER TABLE {schema}.events
            ALTER COLUMN weight SET DEFAULT 1,
            ALTER COLUMN weight SET NOT NULL,
            ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now();
        """,
    ),
    (
        3,
        "images of items added through the API, by content hash, shared by every replica",
        """
        CREATE TABLE {schema}.images (
            content_hash text PRIMARY KEY,
            data bytea NOT NULL,
            added_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        4,
        "projections learned by `stylefinder tune` (their tuned vectors: tables tuned_<digest>)",
        """
        CREATE TABLE {schema}.projections (
            digest text PRIMARY KEY,
            data bytea NOT NULL,
            dim int NOT NULL,
            filled_generation bigint NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        5,
        "full-text search over the items' metadata words (English stemming, GIN index)",
        """
        ALTER TABLE {schema}.items ADD COLUMN words tsvector GENERATED ALWAYS AS
            (jsonb_to_tsvector('english'::regconfig, metadata, '["string"]'::jsonb)) STORED;
        CREATE INDEX items_words ON {schema}.items USING gin (words);
        """,
    ),
)
LATEST = MIGRATIONS[-1][0]


def schema_version(conn: psycopg.Connection, schema: str) -> int:
    """The newest migration applied to `schema` (0 when it has none, or does not exist).

    Example:
        >>> schema_version(conn, "shop")  # doctest: +SKIP
        1
    """
    from psycopg import sql

    exists = conn.execute("SELECT to_regclass(%s)", (f"{schema}.schema_migrations",))
    if exists.fetchone()[0] is None:
        return 0
    query = sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_migrations")
    return int(conn.execute(query.format(sql.Identifier(schema))).fetchone()[0])


def migrate(conn: psycopg.Connection, schema: str) -> list[int]:
    """Create or bring `schema` up to the latest migration; returns the versions applied now
    (empty when it was up to date). Needs the pgvector extension (see `require_vector`).

    Example:
        >>> migrate(conn, "shop"), migrate(conn, "shop")  # doctest: +SKIP
        ([1], [])
    """
    from psycopg import sql

    require_vector(conn)
    name = sql.Identifier(schema)
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"stylefinder:{schema}",))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_migrations (version int PRIMARY KEY, "
                "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(name)
        )
        current = schema_version(conn, schema)
        if current > LATEST:
            raise DatabaseError(
                f"schema {schema!r} is at version {current}, newer than this stylefinder knows "
                f"({LATEST}): upgrade stylefinder to use it"
            )
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            conn.execute(sql.SQL(statements).format(schema=name))
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.schema_migrations (version, description) VALUES (%s, %s)"
                ).format(name),
                (version, description),
            )
            applied.append(version)
    return applied
