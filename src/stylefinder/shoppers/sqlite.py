"""The SQLite event store: users, events and token hashes in INDEX_DIR/shoppers.sqlite.

The shoppers' file is apart from the catalog's manifest, so that copying or sharing a catalog
(its header, manifest and vector files) copies no personal data, and a rebuilt catalog keeps its
shoppers. Indexes made before kept the tables `users` and `events` in manifest.sqlite: the first
use moves them here and erases them there (SQLite secure_delete, then a WAL checkpoint). Each
call opens its own connection (WAL, busy timeout), so one `SqliteEventStore` may be shared by
many threads and processes.

Example:
    >>> store = SqliteEventStore("shop-index")  # doctest: +SKIP
    >>> store.add_events("u-1", [{"item_id": "dress-12", "kind": "like"}],
    ...                  known_items={"dress-12"})  # doctest: +SKIP
    [Event(user_id='u-1', item_id='dress-12', kind='like', ...)]
    >>> token = store.create_token("u-1")  # doctest: +SKIP
    >>> store.verify_token("u-1", token)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from stylefinder.errors import IndexStateError, UnknownUserError
from stylefinder.index.header import MANIFEST_FILE, utc_now
from stylefinder.shoppers.base import CsvSource, Event, ImportSummary, KnownItems
from stylefinder.shoppers.csv_events import csv_batches
from stylefinder.shoppers.tokens import new_token, token_hash, token_matches
from stylefinder.shoppers.validation import check_events, check_user_id, make_event

SHOPPERS_FILE = "shoppers.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    token_hash TEXT,
    token_created_at TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts REAL NOT NULL,
    weight REAL NOT NULL DEFAULT 1.0,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id, ts);
CREATE INDEX IF NOT EXISTS events_item ON events (item_id);
"""
_EVENT_COLUMNS = "id, user_id, item_id, kind, ts, weight"
_USER_COLUMNS = "id, created_at, token_hash, token_created_at"
_STORED_EVENT_COLUMNS = "id, user_id, item_id, kind, ts, weight, recorded_at"


class SqliteEventStore:
    """An `EventStore` in the index directory's shoppers.sqlite (next to its manifest).

    Example:
        >>> store = SqliteEventStore("shop-index")  # doctest: +SKIP
        >>> store.add_event("u-1", "dress-12", "purchase", known_items=snapshot)  # doctest: +SKIP
        >>> [e.kind for e in store.events("u-1")]  # doctest: +SKIP
        ['purchase']
    """

    def __init__(self, directory: str | Path, *, timeout: float = 30.0) -> None:
        self.directory = Path(directory)
        self.timeout = timeout
        self._ready = False
        self._ready_lock = threading.Lock()
        self._popularity: tuple[float, dict[str, dict[str, int]]] | None = None

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
            >>> store.add_event("u-1", "sku-1", "like", known_items={"sku-1"})  # doctest: +SKIP
        """
        event = make_event(
            user_id, item_id, kind, timestamp=timestamp, weight=weight, known_items=known_items
        )
        return self._insert([event])[0]

    def add_events(
        self, user_id: str, events: Iterable[Mapping[str, object]], *, known_items: KnownItems
    ) -> list[Event]:
        """Validate and store a shopper's events, all or none: the first bad one raises
        (`BadEventError` or `UnknownItemError`, naming its position) and nothing is stored.

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
        if not events:
            return []
        now = utc_now()
        stored = []
        with self._transaction() as con:
            con.executemany(
                "INSERT OR IGNORE INTO users (id, created_at) VALUES (?, ?)",
                [(user, now) for user in sorted({e.user_id for e in events})],
            )
            for e in events:
                cursor = con.execute(
                    "INSERT INTO events (user_id, item_id, kind, ts, weight, recorded_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (e.user_id, e.item_id, e.kind, e.timestamp, e.weight, now),
                )
                stored.append(
                    Event(e.user_id, e.item_id, e.kind, e.timestamp, e.weight, cursor.lastrowid)
                )
        return stored

    # -- reading ---------------------------------------------------------------------------------

    def events(self, user_id: str) -> list[Event]:
        """A shopper's events, oldest first (empty for an unknown shopper).

        Example:
            >>> [(e.kind, e.item_id) for e in store.events("u-1")]  # doctest: +SKIP
            [('view', 'sku-1'), ('purchase', 'sku-2')]
        """
        user = check_user_id(user_id)
        with self._connection() as con:
            return _user_events(con, user)

    def users(self) -> list[str]:
        """Every known shopper id, sorted.

        Example:
            >>> store.users()  # doctest: +SKIP
            ['u-1', 'u-2']
        """
        with self._connection() as con:
            return [row[0] for row in con.execute("SELECT id FROM users ORDER BY id")]

    def has_user(self, user_id: str) -> bool:
        """True when the shopper has a record (events or a token)."""
        user = check_user_id(user_id)
        with self._connection() as con:
            return con.execute("SELECT 1 FROM users WHERE id = ?", (user,)).fetchone() is not None

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
        with self._connection() as con:
            query = "SELECT item_id, kind, COUNT(*) FROM events GROUP BY item_id, kind"
            for item, kind, count in con.execute(query):
                counts.setdefault(item, {})[kind] = int(count)
        self._popularity = (time.monotonic(), counts)
        return counts

    def export_user(self, user_id: str) -> dict:
        """Everything stored about a shopper (the token itself is never stored, only whether
        there is one), or `UnknownUserError`.

        Example:
            >>> store.export_user("u-1")["events"][0]["kind"]  # doctest: +SKIP
            'view'
        """
        user = check_user_id(user_id)
        with self._connection() as con:
            con.execute("BEGIN")
            row = con.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user,)).fetchone()
            events = _user_events(con, user)
            con.execute("COMMIT")
        if row is None:
            raise UnknownUserError(f"no user {user!r}")
        return {
            "user": {
                "id": row[0],
                "created_at": row[1],
                "has_token": row[2] is not None,
                "token_created_at": row[3],
            },
            "events": [event.to_dict() for event in events],
            "exported_at": utc_now(),
        }

    # -- erasing ---------------------------------------------------------------------------------

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Erase a shopper: their events, their record and their token, overwriting the deleted
        bytes in the database file (SQLite secure_delete, then a WAL checkpoint). Returns how
        many rows went ({"users": 0 or 1, "events": n}).

        Example:
            >>> store.delete_user("u-1")  # doctest: +SKIP
            {'users': 1, 'events': 42}
        """
        user = check_user_id(user_id)
        with self._connection() as con:
            with _immediate(con):
                events = con.execute("DELETE FROM events WHERE user_id = ?", (user,)).rowcount
                users = con.execute("DELETE FROM users WHERE id = ?", (user,)).rowcount
            # Older copies of the pages may sit in the write-ahead log: fold it into the
            # database (now zeroed where the rows were) and empty it. Best effort while other
            # connections read; the next checkpoint finishes the job.
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        self._popularity = None
        return {"users": users, "events": events}

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
        now = utc_now()
        with self._connection() as con:
            con.execute(
                "INSERT INTO users (id, created_at, token_hash, token_created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "token_hash = excluded.token_hash, token_created_at = excluded.token_created_at",
                (user, now, token_hash(token), now),
            )
        return token

    def verify_token(self, user_id: str, token: str) -> bool:
        """True when `token` is the current token of `user_id` (constant-time comparison).

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
        with self._connection() as con:
            row = con.execute("SELECT token_hash FROM users WHERE id = ?", (user,)).fetchone()
        return token_matches(token, row[0] if row is not None else None)

    def revoke_token(self, user_id: str) -> bool:
        """Forget a shopper's token; True when there was one."""
        user = check_user_id(user_id)
        with self._connection() as con:
            cursor = con.execute(
                "UPDATE users SET token_hash = NULL, token_created_at = NULL "
                "WHERE id = ? AND token_hash IS NOT NULL",
                (user,),
            )
        return cursor.rowcount > 0

    # -- connections -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self):
        if not (self.directory / MANIFEST_FILE).is_file():
            raise IndexStateError(f"no index at {self.directory} (missing {MANIFEST_FILE})")
        con = _connect(self.directory / SHOPPERS_FILE, self.timeout)
        try:
            if not self._ready:
                with self._ready_lock:
                    if not self._ready:
                        con.executescript(_SCHEMA)
                        _move_from_manifest(con, self.directory / MANIFEST_FILE, self.timeout)
                        self._ready = True
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def _transaction(self):
        with self._connection() as con, _immediate(con):
            yield con


def _user_events(con: sqlite3.Connection, user: str) -> list[Event]:
    rows = con.execute(
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE user_id = ? ORDER BY ts, id", (user,)
    ).fetchall()
    return [Event(u, item, kind, ts, weight, id_) for id_, u, item, kind, ts, weight in rows]


@contextlib.contextmanager
def _immediate(con: sqlite3.Connection):
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    # Zero freed space on every change of the shopper tables (also cells moved when a page
    # splits), so that erasing a shopper leaves no stale copy behind.
    con.execute("PRAGMA secure_delete=ON")
    return con


def _move_from_manifest(con: sqlite3.Connection, manifest: Path, timeout: float) -> None:
    """Move the shoppers' tables an older index kept in its manifest into `con`'s file: copy
    (rows already there are kept, so a move interrupted and run again adds nothing twice), then
    drop them from the manifest, overwriting their pages, and empty its write-ahead log."""
    old = _connect(manifest, timeout)
    try:
        query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)"
        tables = {row[0] for row in old.execute(query, ("users", "events"))}
        if not tables:
            return
        con.execute("ATTACH DATABASE ? AS manifest", (str(manifest),))
        try:
            with _immediate(con):
                for table, columns in (("users", _USER_COLUMNS), ("events", _STORED_EVENT_COLUMNS)):
                    if table in tables:
                        con.execute(
                            f"INSERT OR IGNORE INTO main.{table} ({columns}) "
                            f"SELECT {columns} FROM manifest.{table}"
                        )
        finally:
            con.execute("DETACH DATABASE manifest")
        with _immediate(old):
            for table in tables:
                old.execute(f"DROP TABLE IF EXISTS {table}")
        old.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        old.close()
