"""The PostgreSQL event store: shoppers, their events and token hashes in a catalog's schema.

What lives where: the tables are `{schema}.users` (id, created_at, token_hash,
token_created_at) and `{schema}.events` (id, user_id, item_id, kind, at = the event's epoch
seconds, weight, recorded_at), made by `index.pg_schema`'s migrations in the same schema as the
catalog they belong to, so that one `?schema=` URL names a whole shop. Connections come from a
`psycopg_pool.ConnectionPool` of autocommit connections (`index.pg_connect.open_pool`), the
store's own or one shared with the catalog. Validation (`shoppers.validation`), CSV reading
(`shoppers.csv_events`) and tokens (`shoppers.tokens`) are those of every `EventStore`, so this
store accepts, refuses and answers exactly as `shoppers.sqlite.SqliteEventStore` does; times
stored as timestamptz come back as ISO-8601 UTC strings with seconds, as there.

Erasing a shopper deletes their rows in one transaction; PostgreSQL reclaims the dead rows'
space at its next (auto)vacuum, and copies in its write-ahead log, replicas and backups follow
the server's own retention.

Example:
    >>> store = PostgresEventStore("postgresql://shop@db/shop?schema=spring")  # doctest: +SKIP
    >>> store.add_events("u-1", [{"item_id": "dress-12", "kind": "like"}],
    ...                  known_items=snapshot)  # doctest: +SKIP
    [Event(user_id='u-1', item_id='dress-12', kind='like', ...)]
    >>> token = store.create_token("u-1")  # doctest: +SKIP
    >>> store.verify_token("u-1", token)  # doctest: +SKIP
    True
    >>> store.close()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from stylefinder.errors import DatabaseError, UnknownUserError
from stylefinder.index.header import utc_now
from stylefinder.index.pg_connect import DatabaseTarget, database_failure, open_pool, parse_url
from stylefinder.index.pg_schema import migrate
from stylefinder.shoppers.base import CsvSource, Event, ImportSummary, KnownItems
from stylefinder.shoppers.csv_events import csv_batches
from stylefinder.shoppers.tokens import new_token, token_hash, token_matches
from stylefinder.shoppers.validation import check_events, check_user_id, make_event

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

_EVENT_COLUMNS = "id, user_id, item_id, kind, at, weight"


class PostgresEventStore:
    """An `EventStore` in a PostgreSQL schema; one object may be shared by many threads, and
    many processes (API replicas) may use the same schema at once.

    `target` is a `postgresql://...?schema=name` URL or a parsed `DatabaseTarget`. The store
    opens its own pool on first use, unless given `pool` (autocommit connections, as
    `open_pool` makes; a shared pool is left open by `close`). The first use also migrates the
    schema (`pg_schema.migrate`, safe when processes race). `timeout` bounds the wait for the
    server and for a free connection; a server that is down or drops the connection raises
    `DatabaseError` naming the URL without its password.

    Example:
        >>> with PostgresEventStore("postgresql:///shop?schema=spring") as store:  # doctest: +SKIP
        ...     store.add_event("u-1", "dress-12", "purchase", known_items=snapshot)
        ...     [e.kind for e in store.events("u-1")]
        ['purchase']
    """

    def __init__(
        self,
        target: DatabaseTarget | str,
        *,
        pool: psycopg_pool.ConnectionPool | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.target = parse_url(target) if isinstance(target, str) else target
        self.timeout = timeout
        self._pool = pool
        self._owns_pool = pool is None
        self._closed = False
        self._ready = False
        self._lock = threading.Lock()
        self._queries: dict[str, psycopg.sql.Composed] = {}
        self._popularity: tuple[float, dict[str, dict[str, int]]] | None = None

    def close(self) -> None:
        """Close the pool this store opened (a pool it was given stays open); idempotent.

        Example:
            >>> store.close(); store.close()  # doctest: +SKIP
        """
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None and self._owns_pool:
            pool.close()

    def __enter__(self) -> PostgresEventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------

    def add_event(
        self,
        user_id: str,
        item_id: str,
        kind: str,
        *,
        timestamp: object = None,
        weight: object = None,
        known_items: KnownItems,
    ) -> Event:
        """Validate and store one event; returns it with its id.

        Example:
            >>> store.add_event("u-1", "sku-1", "like", known_items={"sku-1"}).id  # doctest: +SKIP
            1
        """
        event = make_event(
            user_id, item_id, kind, timestamp=timestamp, weight=weight, known_items=known_items
        )
        return self._insert([event])[0]

    def add_events(
        self, user_id: str, events: Iterable[Mapping[str, object]], *, known_items: KnownItems
    ) -> list[Event]:
        """Validate and store a shopper's events in one transaction, all or none: the first
        bad one raises (`BadEventError` or `UnknownItemError`, naming its position) and nothing
        is stored.

        Example:
            >>> store.add_events("u-1", [{"item_id": "sku-1", "kind": "view"},
            ...                          {"item_id": "sku-2", "kind": "purchase",
            ...                           "timestamp": "2024-05-01T12:00:00Z"}],
            ...                  known_items=snapshot)  # doctest: +SKIP
        """
        return self._insert(check_events(user_id, events, known_items=known_items))

    def import_csv(self, source: CsvSource, *, known_items: KnownItems) -> ImportSummary:
        """Import events from CSV with the header `user_id,item_id,kind[,timestamp][,weight]`,
        one transaction per batch of rows (see `csv_events.csv_batches`).

        Example:
            >>> summary = store.import_csv("events.csv", known_items=snapshot)  # doctest: +SKIP
            >>> summary.added, summary.rejected[:1]  # doctest: +SKIP
            (998, [(17, "no item 'sku-404' in the index")])
        """
        summary = ImportSummary()
        for batch in csv_batches(source, known_items=known_items, summary=summary):
            summary.added += len(self._insert(batch))
        return summary

    def _insert(self, events: list[Event]) -> list[Event]:
        """Store `events` and their shoppers' records in one transaction; the events with ids."""
        if not events:
            return []
        users = sorted({e.user_id for e in events})  # one lock order for concurrent writers
        rows = [(e.user_id, e.item_id, e.kind, e.timestamp, e.weight) for e in events]
        with self._transaction("storing events") as conn, conn.cursor() as cursor:
            cursor.executemany(
                self._sql("INSERT INTO {schema}.users (id) VALUES (%s) ON CONFLICT DO NOTHING"),
                [(user,) for user in users],
            )
            cursor.executemany(
                self._sql(
                    "INSERT INTO {schema}.events (user_id, item_id, kind, at, weight) "
                    "VALUES (%s, %s, %s, %s, %s) RETURNING id"
                ),
                rows,
                returning=True,
            )
            ids = [result.fetchone()[0] for result in cursor.results()]
        return [
            Event(e.user_id, e.item_id, e.kind, e.timestamp, e.weight, id_)
            for e, id_ in zip(events, ids, strict=True)
        ]

    # -- reading ---------------------------------------------------------------------------------

    def events(self, user_id: str) -> list[Event]:
        """A shopper's events, oldest first, ties in the order stored (empty for an unknown
        shopper).

        Example:
            >>> [(e.kind, e.item_id) for e in store.events("u-1")]  # doctest: +SKIP
            [('view', 'sku-1'), ('purchase', 'sku-2')]
        """
        user = check_user_id(user_id)
        with self._connection("reading events") as conn:
            return self._user_events(conn, user)

    def users(self) -> list[str]:
        """Every known shopper id, sorted (by code point, as Python sorts them).

        Example:
            >>> store.users()  # doctest: +SKIP
            ['u-1', 'u-2']
        """
        # COLLATE "C": code-point order, as Python's sorted and the SQLite store, whatever the
        # database's own collation (en_US would put "a" before "B")
        query = self._sql('SELECT id FROM {schema}.users ORDER BY id COLLATE "C"')
        with self._connection("listing shoppers") as conn:
            return [row[0] for row in conn.execute(query)]

    def has_user(self, user_id: str) -> bool:
        """True when the shopper has a record (events or a token).

        Example:
            >>> store.has_user("u-1"), store.has_user("nobody")  # doctest: +SKIP
            (True, False)
        """
        user = check_user_id(user_id)
        query = self._sql("SELECT 1 FROM {schema}.users WHERE id = %s")
        with self._connection("looking up a shopper") as conn:
            return conn.execute(query, (user,)).fetchone() is not None

    def item_counts(self, *, max_age_s: float = 30.0) -> dict[str, dict[str, int]]:
        """Events per item and kind over all shoppers ({item_id: {kind: count}}), for
        popularity. Cached for `max_age_s` seconds (0 reads afresh).

        Example:
            >>> store.item_counts()["sku-2"]  # doctest: +SKIP
            {'purchase': 3, 'view': 12}
        """
        cached = self._popularity
        if cached is not None and time.monotonic() - cached[0] < max_age_s:
            return cached[1]
        counts: dict[str, dict[str, int]] = {}
        query = self._sql("SELECT item_id, kind, count(*) FROM {schema}.events GROUP BY 1, 2")
        with self._connection("counting events") as conn:
            for item, kind, count in conn.execute(query):
                counts.setdefault(item, {})[kind] = int(count)
        self._popularity = (time.monotonic(), counts)
        return counts

    def export_user(self, user_id: str) -> dict:
        """Everything stored about a shopper, read in one snapshot (the token itself is never
        stored, only whether there is one), or `UnknownUserError`.

        Example:
            >>> store.export_user("u-1")["user"]["created_at"]  # doctest: +SKIP
            '2026-12-02T18:30:00+00:00'
        """
        user = check_user_id(user_id)
        query = self._sql(
            "SELECT id, created_at, token_hash, token_created_at FROM {schema}.users WHERE id = %s"
        )
        with self._transaction("exporting a shopper") as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = conn.execute(query, (user,)).fetchone()
            events = self._user_events(conn, user)
        if row is None:
            raise UnknownUserError(f"no user {user!r}")
        return {
            "user": {
                "id": row[0],
                "created_at": _iso(row[1]),
                "has_token": row[2] is not None,
                "token_created_at": _iso(row[3]),
            },
            "events": [event.to_dict() for event in events],
            "exported_at": utc_now(),
        }

    def _user_events(self, conn: psycopg.Connection, user: str) -> list[Event]:
        query = self._sql(
            f"SELECT {_EVENT_COLUMNS} FROM {{schema}}.events WHERE user_id = %s ORDER BY at, id"
        )
        rows = conn.execute(query, (user,)).fetchall()
        return [Event(u, item, kind, at, weight, id_) for id_, u, item, kind, at, weight in rows]

    # -- erasing ---------------------------------------------------------------------------------

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Erase a shopper: their events, their record and their token, in one transaction.
        Returns how many rows went ({"users": 0 or 1, "events": n}).

        Example:
            >>> store.delete_user("u-1")  # doctest: +SKIP
            {'users': 1, 'events': 42}
        """
        user = check_user_id(user_id)
        with self._transaction("erasing a shopper") as conn:
            events = conn.execute(
                self._sql("DELETE FROM {schema}.events WHERE user_id = %s"), (user,)
            )
            users = conn.execute(self._sql("DELETE FROM {schema}.users WHERE id = %s"), (user,))
        self._popularity = None
        return {"users": users.rowcount, "events": events.rowcount}

    # -- tokens ----------------------------------------------------------------------------------

    def create_token(self, user_id: str) -> str:
        """A new secret access token for a shopper (creating the shopper's record if needed).
        Only its SHA-256 is stored; a previous token stops working.

        Example:
            >>> token = store.create_token("u-1")  # doctest: +SKIP
            >>> store.verify_token("u-1", token), store.verify_token("u-2", token)  # doctest: +SKIP
            (True, False)
        """
        user = check_user_id(user_id)
        token = new_token()
        query = self._sql(
            "INSERT INTO {schema}.users (id, token_hash, token_created_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, "
            "token_created_at = excluded.token_created_at"
        )
        with self._connection("storing a token") as conn:
            conn.execute(query, (user, token_hash(token)))
        return token

    def verify_token(self, user_id: str, token: str) -> bool:
        """True when `token` is the current token of `user_id` (constant-time comparison);
        False for a malformed id or token.

        Example:
            >>> store.verify_token("u-1", "wrong")  # doctest: +SKIP
            False
        """
        try:
            user = check_user_id(user_id)
        except ValueError:
            return False
        if not isinstance(token, str) or not token:
            return False
        query = self._sql("SELECT token_hash FROM {schema}.users WHERE id = %s")
        with self._connection("checking a token") as conn:
            row = conn.execute(query, (user,)).fetchone()
        return token_matches(token, row[0] if row is not None else None)

    def revoke_token(self, user_id: str) -> bool:
        """Forget a shopper's token; True when there was one.

        Example:
            >>> store.revoke_token("u-1"), store.revoke_token("u-1")  # doctest: +SKIP
            (True, False)
        """
        user = check_user_id(user_id)
        query = self._sql(
            "UPDATE {schema}.users SET token_hash = NULL, token_created_at = NULL "
            "WHERE id = %s AND token_hash IS NOT NULL"
        )
        with self._connection("revoking a token") as conn:
            return conn.execute(query, (user,)).rowcount > 0

    # -- connections -----------------------------------------------------------------------------

    def _sql(self, text: str) -> psycopg.sql.Composed:
        """`text` with `{schema}` replaced by the quoted schema name (composed once)."""
        query = self._queries.get(text)
        if query is None:
            from psycopg import sql

            query = sql.SQL(text).format(schema=sql.Identifier(self.target.schema))
            self._queries[text] = query
        return query

    @contextlib.contextmanager
    def _connection(self, doing: str) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection to a migrated schema; the server's failures (down,
        connection dropped, no free connection in time) as `DatabaseError`."""
        import psycopg

        try:
            pool = self._ready_pool()
            with pool.connection(timeout=self.timeout) as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise database_failure(error, self.target, doing) from error

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[psycopg.Connection]:
        with self._connection(doing) as conn, conn.transaction():
            yield conn

    def _ready_pool(self) -> psycopg_pool.ConnectionPool:
        """The pool, opened and the schema migrated on first use (once per store)."""
        pool = self._pool
        if self._ready and pool is not None:
            return pool
        with self._lock:
            if self._closed:
                raise DatabaseError(f"the event store of {self.target.redacted} is closed")
            if self._pool is None:
                self._pool = open_pool(self.target, timeout=self.timeout)
            if not self._ready:
                with self._pool.connection(timeout=self.timeout) as conn:
                    migrate(conn, self.target.schema)
                self._ready = True
            return self._pool


def _iso(value: datetime | None) -> str | None:
    """A timestamptz as the SQLite store writes times: ISO-8601 UTC with seconds."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="seconds")
