"""Shoppers and what they did: users, events and token hashes in INDEX_DIR/shoppers.sqlite.

The shoppers' file is apart from the catalog's manifest, so that copying or sharing a catalog
(its header, manifest and vector files) copies no personal data, and a rebuilt catalog keeps its
shoppers. Indexes made before kept the tables `users` and `events` in manifest.sqlite: the first
use moves them here and erases them there (SQLite secure_delete, then a WAL checkpoint). Each
call opens its own connection (WAL, busy timeout), so one `EventStore` may be shared by many
threads and processes.

An event says that a shopper viewed, liked, disliked, added to the cart or bought an item at a
moment (UTC), with an optional weight (a multiplier, 1 by default). Events name items that exist
in the index when they are recorded; events of items removed later are ignored by the ranking.

Example:
    >>> store = EventStore("shop-index")  # doctest: +SKIP
    >>> store.add_events("u-1", [{"item_id": "dress-12", "kind": "like"}],
    ...                  known_items={"dress-12"})  # doctest: +SKIP
    [Event(user_id='u-1', item_id='dress-12', kind='like', ...)]
    >>> token = store.create_token("u-1")  # doctest: +SKIP
    >>> store.verify_token("u-1", token)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import math
import secrets
import sqlite3
import threading
import time
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from stylefinder.errors import (
    IndexStateError,
    StylefinderError,
    UnknownItemError,
    UnknownUserError,
)
from stylefinder.index.store import MANIFEST_FILE, Snapshot, utc_now

#: The kinds of event a shopper can cause.
EVENT_KINDS = ("view", "like", "dislike", "add_to_cart", "purchase")
MAX_ID_LENGTH = 256
MAX_WEIGHT = 100.0
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()
FUTURE_SLACK_S = 86_400.0  # clocks disagree; an event may be up to a day "in the future"
MAX_REJECTED_KEPT = 1000  # rejected CSV rows described in an ImportSummary (all are counted)
_IMPORT_BATCH = 5000  # rows per transaction when importing
_CSV_COLUMNS = ("user_id", "item_id", "kind", "timestamp", "weight")

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
_NO_TOKEN = hashlib.sha256(b"no token").hexdigest()  # compared against when a user has none

KnownItems = Container[str] | Snapshot
SHOPPERS_FILE = "shoppers.sqlite"
_USER_COLUMNS = "id, created_at, token_hash, token_created_at"
_STORED_EVENT_COLUMNS = "id, user_id, item_id, kind, ts, weight, recorded_at"
CsvSource = str | Path | bytes | TextIO  # a file path, the file's bytes, or an open text file


@dataclass(frozen=True)
class Event:
    """One thing a shopper did. `timestamp` is seconds since the epoch (UTC); `id` is set once
    stored."""

    user_id: str
    item_id: str
    kind: str
    timestamp: float
    weight: float = 1.0
    id: int | None = None

    @property
    def time(self) -> str:
        """The timestamp as an ISO-8601 UTC string."""
        return iso_time(self.timestamp)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "kind": self.kind,
            "timestamp": self.time,
            "weight": self.weight,
        }


@dataclass
class ImportSummary:
    """What a CSV import did: rows added, and (line number, reason) of rows rejected.

    At most `MAX_REJECTED_KEPT` rejections are described; `rejected_total` counts them all.
    """

    added: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    rejected_total: int = 0

    def reject(self, line: int, reason: str) -> None:
        self.rejected_total += 1
        if len(self.rejected) < MAX_REJECTED_KEPT:
            self.rejected.append((line, reason))

    def to_dict(self) -> dict:
        return {
            "added": self.added,
            "rejected": [{"line": line, "reason": reason} for line, reason in self.rejected],
            "rejected_total": self.rejected_total,
        }


# -- validation ------------------------------------------------------------------------------


class BadEventError(StylefinderError, ValueError):
    """An event, a shopper id or an events CSV cannot be used (bad kind, weight or time, a
    malformed id, a CSV that is not UTF-8 or lacks the required header); the message says which
    and how to fix it."""


def check_user_id(user_id: object) -> str:
    """A valid user id, stripped (the rules of item ids), or `BadEventError`.

    Example:
        >>> check_user_id(" shopper-7 ")
        'shopper-7'
    """
    return _check_id(user_id, "user id")


def check_kind(kind: object) -> str:
    """An event kind from `EVENT_KINDS` (case and surrounding spaces ignored), or `BadEventError`.

    Example:
        >>> check_kind(" Purchase")
        'purchase'
    """
    text = kind.strip().lower() if isinstance(kind, str) else None
    if text not in EVENT_KINDS:
        raise BadEventError(f"event kind must be one of {', '.join(EVENT_KINDS)}; got {kind!r}")
    return text


def check_weight(weight: object) -> float:
    """An event weight: a finite number in (0, 100]; None or "" mean 1.

    Example:
        >>> check_weight("2.5")
        2.5
    """
    if weight is None or (isinstance(weight, str) and not weight.strip()):
        return 1.0
    if isinstance(weight, bool):
        raise BadEventError(f"event weight must be a number, got {weight!r}")
    try:
        value = float(weight)
    except (TypeError, ValueError):
        raise BadEventError(f"event weight must be a number, got {weight!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_WEIGHT:
        raise BadEventError(f"event weight must be a finite number in (0, {MAX_WEIGHT:g}]")
    return value


def parse_timestamp(value: object, *, now: float | None = None) -> float:
    """Seconds since the epoch (UTC) from ISO 8601 text, epoch seconds (a number or numeric
    text) or a datetime; None or "" mean now. A time without a zone is taken as UTC. Times
    before 2000 or more than a day after `now` are refused (`BadEventError`); a number that
    reads as a valid time only in milliseconds is refused with a hint to divide it by 1000.

    Example:
        >>> parse_timestamp("2024-05-01T12:00:00Z")
        1714564800.0
        >>> parse_timestamp(1714564800)
        1714564800.0
        >>> parse_timestamp("2999-01-01", now=1714564800)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        stylefinder.shoppers.events.BadEventError: timestamp '2999-01-01' (...) is in the ...
    """
    now = time.time() if now is None else now
    if value is None or (isinstance(value, str) and not value.strip()):
        return float(now)
    if isinstance(value, bool):
        raise BadEventError(f"timestamp must be ISO 8601 text or epoch seconds, got {value!r}")
    numeric = isinstance(value, (int, float))
    if isinstance(value, datetime):
        seconds = _seconds(_utc(value), value)
    elif numeric:
        seconds = _float(value)
    elif isinstance(value, str):
        seconds, numeric = _parse_text_time(value.strip())
    else:
        raise BadEventError(f"timestamp must be ISO 8601 text or epoch seconds, got {value!r}")
    if not math.isfinite(seconds):
        raise BadEventError(f"timestamp {_shown(value)} is not a finite number")
    return _in_range(seconds, value, now=now, numeric=numeric)


def _in_range(seconds: float, value: object, *, now: float, numeric: bool) -> float:
    """`seconds` when it lies from 2000-01-01 to a day after `now`, else `BadEventError`
    saying which way it is off (and, for a number that fits once divided by 1000, that it
    looks like milliseconds)."""
    latest = now + FUTURE_SLACK_S
    if EARLIEST <= seconds <= latest:
        return seconds
    if numeric and EARLIEST <= seconds / 1000 <= latest:
        in_seconds = f"{seconds / 1000:.3f}".rstrip("0").rstrip(".")
        raise BadEventError(
            f"timestamp {_shown(value)} looks like milliseconds since the epoch "
            f"({iso_time(seconds / 1000)}); give epoch seconds: {in_seconds}"
        )
    side = "is in the future" if seconds > latest else "is before 2000-01-01"
    raise BadEventError(
        f"timestamp {_shown(value)} ({_describe(seconds)}) {side}: outside the accepted range "
        "(2000-01-01 to one day from now)"
    )


def _shown(value: object, limit: int = 60) -> str:
    """A value as quoted in a message, shortened when long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(seconds: float) -> str:
    """Epoch seconds as an ISO time, or the side of the calendar they fall off."""
    try:
        return iso_time(seconds)
    except (OverflowError, OSError, ValueError):
        return "after the year 9999" if seconds > 0 else "before the year 1"


def _float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer too large for a float
        return math.inf if value > 0 else -math.inf


def _seconds(stamp: datetime, value: object) -> float:
    try:
        return stamp.timestamp()
    except (OverflowError, OSError, ValueError):
        raise BadEventError(f"timestamp {value!r} is not a representable time") from None


def iso_time(seconds: float) -> str:
    """Epoch seconds as an ISO-8601 UTC string.

    Example:
        >>> iso_time(1714564800)
        '2024-05-01T12:00:00+00:00'
    """
    stamp = datetime.fromtimestamp(seconds, timezone.utc)
    return stamp.isoformat(timespec="seconds" if stamp.microsecond == 0 else "milliseconds")


def make_event(
    user_id: object,
    item_id: object,
    kind: object,
    *,
    timestamp: object = None,
    weight: object = None,
    known_items: KnownItems,
    now: float | None = None,
) -> Event:
    """A validated `Event`: `BadEventError` for a bad field, `UnknownItemError` for an item that
    is not in `known_items` (item ids, or a `Snapshot`).

    Example:
        >>> event = make_event("u-1", "sku-1", "Like", timestamp="2024-05-01T12:00:00Z",
        ...                    known_items={"sku-1"})
        >>> event.kind, event.timestamp, event.weight
        ('like', 1714564800.0, 1.0)
    """
    user = check_user_id(user_id)
    item = _check_id(item_id, "item id")
    kind = check_kind(kind)
    seconds = parse_timestamp(timestamp, now=now)
    value = check_weight(weight)
    known = known_items.row_of if isinstance(known_items, Snapshot) else known_items
    if item not in known:
        raise UnknownItemError(f"no item {item!r} in the index")
    return Event(user, item, kind, seconds, value)


# -- the store -------------------------------------------------------------------------------


class EventStore:
    """Users, their events and their access tokens, in an index directory's manifest.

    Example:
        >>> store = EventStore("shop-index")  # doctest: +SKIP
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

        Each event is a mapping with `item_id` and `kind`, and optionally `timestamp` and
        `weight`.

        Example:
            >>> store.add_events("u-1", [{"item_id": "sku-1", "kind": "view"},
            ...                          {"item_id": "sku-2", "kind": "purchase",
            ...                           "timestamp": "2024-05-01T12:00:00Z"}],
            ...                  known_items=snapshot)  # doctest: +SKIP
        """
        user = check_user_id(user_id)
        now = time.time()
        checked = []
        for position, raw in enumerate(events):
            if not isinstance(raw, Mapping):
                raise BadEventError(f"event {position}: must be an object with item_id and kind")
            unknown = sorted(map(str, set(raw) - {"item_id", "kind", "timestamp", "weight"}))
            if unknown:
                raise BadEventError(f"event {position}: unknown field(s) {', '.join(unknown)}")
            try:
                checked.append(
                    make_event(
                        user,
                        raw.get("item_id"),
                        raw.get("kind"),
                        timestamp=raw.get("timestamp"),
                        weight=raw.get("weight"),
                        known_items=known_items,
                        now=now,
                    )
                )
            except UnknownItemError as exc:
                raise UnknownItemError(f"event {position}: {exc}") from None
            except BadEventError as exc:
                raise BadEventError(f"event {position}: {exc}") from None
        return self._insert(checked)

    def import_csv(self, source: CsvSource, *, known_items: KnownItems) -> ImportSummary:
        """Import events from CSV with the header `user_id,item_id,kind[,timestamp][,weight]`.

        `source` is a file path, the CSV's bytes, or an open text file (`io.StringIO(text)` for
        text in memory). Bad rows (unknown item, bad kind, weight or time, wrong number of
        fields) are rejected with their line number and the rest is stored. A header without the
        required columns raises `BadEventError` and nothing is stored.

        Example:
            >>> summary = store.import_csv("events.csv", known_items=snapshot)  # doctest: +SKIP
            >>> summary.added, summary.rejected[:1]  # doctest: +SKIP
            (998, [(17, "no item 'sku-404' in the index")])
        """
        with _open_text(source) as text:
            reader = csv.reader(text)
            header = _read_header(reader)
            summary = ImportSummary()
            batch: list[Event] = []
            now = time.time()
            line = reader.line_num
            while True:
                start = line + 1
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    line = reader.line_num
                    summary.reject(start, f"unreadable CSV ({exc})")
                    continue
                line = reader.line_num
                if not row or not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    summary.reject(start, f"expected {len(header)} fields, found {len(row)}")
                    continue
                fields = dict(zip(header, row, strict=True))
                try:
                    event = make_event(
                        fields["user_id"],
                        fields["item_id"],
                        fields["kind"],
                        timestamp=fields.get("timestamp"),
                        weight=fields.get("weight"),
                        known_items=known_items,
                        now=now,
                    )
                except (BadEventError, UnknownItemError) as exc:
                    summary.reject(start, str(exc))
                    continue
                batch.append(event)
                if len(batch) >= _IMPORT_BATCH:
                    summary.added += len(self._insert(batch))
                    batch = []
            if batch:
                summary.added += len(self._insert(batch))
        return summary

    def _insert(self, events: list[Event]) -> list[Event]:
        if not events:
            return []
        now = utc_now()
        stored = []
        with self._connection() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
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
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
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
            rows = con.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE user_id = ? ORDER BY ts, id", (user,)
            ).fetchall()
        return [Event(u, item, kind, ts, weight, id_) for id_, u, item, kind, ts, weight in rows]

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
            row = con.execute(
                "SELECT id, created_at, token_hash, token_created_at FROM users WHERE id = ?",
                (user,),
            ).fetchone()
            rows = con.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE user_id = ? ORDER BY ts, id", (user,)
            ).fetchall()
            con.execute("COMMIT")
        if row is None:
            raise UnknownUserError(f"no user {user!r}")
        events = [Event(u, i, k, ts, w, id_).to_dict() for id_, u, i, k, ts, w in rows]
        return {
            "user": {
                "id": row[0],
                "created_at": row[1],
                "has_token": row[2] is not None,
                "token_created_at": row[3],
            },
            "events": events,
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
            con.execute("BEGIN IMMEDIATE")
            try:
                events = con.execute("DELETE FROM events WHERE user_id = ?", (user,)).rowcount
                users = con.execute("DELETE FROM users WHERE id = ?", (user,)).rowcount
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
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
        token = secrets.token_urlsafe(32)
        now = utc_now()
        with self._connection() as con:
            con.execute(
                "INSERT INTO users (id, created_at, token_hash, token_created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "token_hash = excluded.token_hash, token_created_at = excluded.token_created_at",
                (user, now, _token_hash(token), now),
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
        stored = row[0] if row is not None and row[0] else None
        matches = hmac.compare_digest(_token_hash(token), stored or _NO_TOKEN)
        return matches and stored is not None

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
            con.execute("BEGIN IMMEDIATE")
            try:
                for table, columns in (("users", _USER_COLUMNS), ("events", _STORED_EVENT_COLUMNS)):
                    if table in tables:
                        con.execute(
                            f"INSERT OR IGNORE INTO main.{table} ({columns}) "
                            f"SELECT {columns} FROM manifest.{table}"
                        )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.execute("DETACH DATABASE manifest")
        old.execute("BEGIN IMMEDIATE")
        try:
            for table in tables:
                old.execute(f"DROP TABLE IF EXISTS {table}")
            old.execute("COMMIT")
        except BaseException:
            old.execute("ROLLBACK")
            raise
        old.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        old.close()


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadEventError(f"{what} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH or any(ord(c) < 32 for c in value):
        raise BadEventError(f"{what} must be at most {MAX_ID_LENGTH} printable characters")
    return value.strip()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _utc(stamp: datetime) -> datetime:
    return stamp.replace(tzinfo=timezone.utc) if stamp.tzinfo is None else stamp


def _parse_text_time(text: str) -> tuple[float, bool]:
    """Epoch seconds from numeric text or ISO 8601 text, and whether the text was a number."""
    try:
        return float(text), True
    except ValueError:
        pass
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        stamp = _utc(datetime.fromisoformat(iso))
    except ValueError:
        raise BadEventError(
            f"timestamp {text!r} is neither ISO 8601 (2024-05-01T12:00:00Z) nor epoch seconds"
        ) from None
    return _seconds(stamp, text), False


@contextlib.contextmanager
def _open_text(source: CsvSource):
    if isinstance(source, (bytes, bytearray)):
        try:
            yield io.StringIO(bytes(source).decode("utf-8-sig"), newline="")
        except UnicodeDecodeError as exc:
            raise BadEventError(f"the CSV is not UTF-8 text ({exc})") from None
    elif isinstance(source, (str, Path)):
        try:
            with open(source, encoding="utf-8-sig", newline="") as f:
                yield f
        except UnicodeDecodeError as exc:
            raise BadEventError(f"{source}: not UTF-8 text ({exc})") from None
    else:
        yield source


def _read_header(reader) -> list[str]:
    try:
        header = next(row for row in reader if row and any(cell.strip() for cell in row))
    except StopIteration:
        raise BadEventError("the CSV is empty; expected a header user_id,item_id,kind") from None
    except csv.Error as exc:
        raise BadEventError(f"the CSV header is unreadable ({exc})") from None
    header = [cell.strip().lower() for cell in header]
    missing = [c for c in ("user_id", "item_id", "kind") if c not in header]
    unknown = [c for c in header if c not in _CSV_COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        raise BadEventError(
            f"the CSV header must name user_id, item_id and kind, optionally timestamp and "
            f"weight, each once; got {','.join(header)}"
        )
    return header
