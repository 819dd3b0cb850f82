"""Connections to a catalog in PostgreSQL: `postgresql://user@host/db?schema=shop` URLs and
clear errors when the server is down or the pgvector extension is missing.

`psycopg` (the `postgres` extra) is imported on first connection, not with this module.

Example:
    >>> target = parse_url("postgresql://shop:secret@db.internal/catalog?schema=spring")
    >>> target.schema, target.redacted
    ('spring', 'postgresql://shop:***@db.internal/catalog')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from stylefinder.errors import DatabaseError

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

DEFAULT_SCHEMA = "stylefinder"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def is_database_url(location: str) -> bool:
    """Whether an `--index` value names a PostgreSQL catalog rather than a directory.

    Example:
        >>> is_database_url("postgresql://localhost/shop"), is_database_url("shop-index")
        (True, False)
    """
    return str(location).startswith(("postgresql://", "postgres://"))


@dataclass(frozen=True)
class DatabaseTarget:
    """Where a catalog lives: libpq's connection URL (without our `schema` parameter) and the
    schema that holds the catalog's tables."""

    conninfo: str
    schema: str

    @property
    def redacted(self) -> str:
        """The URL with its password hidden, for messages and logs."""
        parts = urlsplit(self.conninfo)
        if parts.password is None:
            return self.conninfo
        host = parts.netloc.rsplit("@", 1)[1]
        netloc = f"{parts.username}:***@{host}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def described(self) -> str:
        """The URL without its password, and the schema: for messages and reports."""
        return f"{self.redacted} (schema {self.schema})"


def shown_location(location: object) -> str:
    """A catalog's location for messages and reports: a directory as given, a URL without its
    password and with its schema.

    Example:
        >>> shown_location("postgresql://shop:pw@db/catalog?schema=spring")
        'postgresql://shop:***@db/catalog (schema spring)'
    """
    text = str(location)
    return parse_url(text).described if is_database_url(text) else text


def parse_url(url: str) -> DatabaseTarget:
    """Split `url` into libpq's URL and the catalog's schema (`?schema=`, default
    "stylefinder"); a schema name is lower-case letters, digits and underscores.

    Example:
        >>> parse_url("postgresql:///shop?host=/run/pg").schema
        'stylefinder'
    """
    if not is_database_url(url):
        raise DatabaseError(f"not a PostgreSQL URL (postgresql://...): {url!r}")
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    schema = schemas[-1] if schemas else DEFAULT_SCHEMA
    if not _SCHEMA_NAME.match(schema):
        raise DatabaseError(
            f"schema {schema!r}: use lower-case letters, digits and underscores (at most 63)"
        )
    # libpq decodes %20 but not "+": `options=-c statement_timeout=5s` must keep its spaces
    rest = urlencode([(key, value) for key, value in query if key != "schema"], quote_via=quote)
    return DatabaseTarget(urlunsplit(parts._replace(query=rest)), schema)


def connect(target: DatabaseTarget, *, timeout: float = 5.0) -> psycopg.Connection:
    """A new connection to `target`, or `DatabaseError` saying why not. It is in autocommit
    mode: writers group their statements in `conn.transaction()` blocks.

    Example:
        >>> with connect(parse_url("postgresql:///shop")) as conn:  # doctest: +SKIP
        ...     conn.execute("select 1").fetchone()
        (1,)
    """
    psycopg = _psycopg()
    try:
        return psycopg.connect(
            target.conninfo, autocommit=True, connect_timeout=max(1, round(timeout))
        )
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DatabaseError(
            f"cannot connect to the PostgreSQL server at {target.redacted}: {reason}"
        ) from error


def open_pool(
    target: DatabaseTarget, *, min_size: int = 1, max_size: int = 8, timeout: float = 5.0
) -> psycopg_pool.ConnectionPool:
    """A pool of connections to `target` (autocommit, checked before each use), opened and
    with its first connection made, or `DatabaseError` saying why not. `pool.connection()`
    waits up to `timeout` seconds for a free connection. Close it when done.

    Example:
        >>> with open_pool(parse_url("postgresql:///shop")) as pool:  # doctest: +SKIP
        ...     with pool.connection() as conn:
        ...         conn.execute("select 1").fetchone()
        (1,)
    """
    _psycopg()
    from psycopg_pool import ConnectionPool, PoolTimeout

    connect(target, timeout=timeout).close()  # the server's own reason when it is down
    pool = ConnectionPool(
        target.conninfo,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout))},
        check=ConnectionPool.check_connection,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=timeout)
    except PoolTimeout as error:
        pool.close()
        raise DatabaseError(
            f"cannot open {min_size} connection(s) to {target.redacted} in {timeout:g} s"
        ) from error
    return pool


def require_vector(conn: psycopg.Connection) -> str:
    """Make sure the pgvector extension is in the database (creating it when the role may);
    returns its version, or raises `DatabaseError` with what to do.

    Example:
        >>> require_vector(conn)  # doctest: +SKIP
        '0.8.5'
    """
    psycopg = _psycopg()
    installed = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    if (row := installed.fetchone()) is not None:
        return row[0]
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    if available.fetchone() is None:
        raise DatabaseError(
            "the PostgreSQL server has no pgvector extension: install it on the server "
            "(Debian/Ubuntu: the postgresql-NN-pgvector package; or build it from "
            "https://github.com/pgvector/pgvector), then run CREATE EXTENSION vector"
        )
    try:
        with conn.transaction():  # openers of a fresh database wait for the first one here
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('stylefinder:create vector'))")
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.UniqueViolation:  # made meanwhile by a client that takes no lock
        pass
    except psycopg.errors.InsufficientPrivilege as error:
        database = conn.info.dbname
        raise DatabaseError(
            f"CREATE EXTENSION vector needs more rights than role {conn.info.user!r} has: ask "
            f"a superuser (or the owner of database {database!r}) to run it once in {database!r}"
        ) from error
    return require_vector(conn)


def failure_reason(error: BaseException, target: DatabaseTarget) -> str:
    """The server's own message when it sent one (a query error's first line), else the last
    line of the driver's (a connection error's cause); without the password should it appear.

    Example:
        >>> failure_reason(OSError("timeout expired"), parse_url("postgresql://a:pw@h/db"))
        'timeout expired'
    """
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = str(error).strip()
    reason = primary or (text.splitlines()[-1] if text else type(error).__name__)
    password = urlsplit(target.conninfo).password
    return reason.replace(password, "***") if password else reason


def database_failure(
    error: BaseException, target: DatabaseTarget, doing: str | None = None
) -> DatabaseError:
    """The `DatabaseError` for a server failure (down, a dropped connection, no free pooled
    connection in time, a statement timeout) met while `doing` something, with its reason.

    Example:
        >>> error = database_failure(OSError("timeout expired"), parse_url("postgresql://h/db"))
        >>> str(error).split("; ")[0]
        'PostgreSQL at postgresql://h/db failed: timeout expired'
    """
    during = f" while {doing}" if doing else ""
    return DatabaseError(
        f"PostgreSQL at {target.redacted} failed{during}: {failure_reason(error, target)}; "
        "check that the server is up, then retry"
    )


def _psycopg():
    try:
        import psycopg
    except ImportError as error:  # pragma: no cover - the extra is installed in the tests
        raise DatabaseError(
            "a PostgreSQL catalog needs psycopg: pip install 'stylefinder[postgres]'"
        ) from error
    return psycopg
