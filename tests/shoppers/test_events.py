"""The event store: validation, CSV import, concurrency, erasure and tokens on a tiny index."""

from __future__ import annotations

import io
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from stylefinder.errors import StylefinderError, UnknownItemError, UnknownUserError
from stylefinder.index.header import MANIFEST_FILE
from stylefinder.index.store import IndexStore
from stylefinder.shoppers.events import (
    SHOPPERS_FILE,
    BadEventError,
    EventStore,
    make_event,
    parse_timestamp,
)
from stylefinder.types import EmbeddingSpace, Item

SPACE = EmbeddingSpace("test", "gem", "none", 4)
ITEMS = [f"sku-{n}" for n in range(6)]
MAY_1 = 1714564800.0  # 2024-05-01T12:00:00Z


def tiny_index(directory: Path, ids: list[str] = ITEMS) -> IndexStore:
    store = IndexStore.create(directory, SPACE)
    rng = np.random.default_rng(0)
    with store.writer() as writer:
        for n, item_id in enumerate(ids):
            vector = rng.standard_normal(4).astype(np.float32)
            vector /= np.linalg.norm(vector)
            writer.put(Item(item_id, f"{item_id}.png", f"{n:064x}"), vector)
    return store


@pytest.fixture
def index(tmp_path: Path) -> IndexStore:
    return tiny_index(tmp_path / "index")


@pytest.fixture
def events(index: IndexStore) -> EventStore:
    return EventStore(index.directory)


def test_events_round_trip_oldest_first(events: EventStore, index: IndexStore):
    snapshot = index.snapshot()
    events.add_event("u-1", "sku-2", "purchase", timestamp=MAY_1 + 60, known_items=snapshot)
    stored = events.add_events(
        "u-1",
        [
            {"item_id": "sku-1", "kind": "View", "timestamp": "2024-05-01T12:00:00Z"},
            {"item_id": "sku-3", "kind": "like", "weight": "2.5"},
        ],
        known_items=snapshot,
    )
    assert all(e.id is not None for e in stored)
    got = events.events("u-1")
    assert [(e.item_id, e.kind) for e in got] == [
        ("sku-1", "view"),
        ("sku-2", "purchase"),
        ("sku-3", "like"),
    ]
    assert got[0].timestamp == MAY_1 and got[0].time == "2024-05-01T12:00:00+00:00"
    assert got[2].weight == 2.5 and got[0].weight == 1.0
    assert events.users() == ["u-1"] and events.has_user("u-1") and not events.has_user("u-2")
    assert events.events("nobody") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:00:00Z", MAY_1),
        ("2024-05-01T14:00:00+02:00", MAY_1),
        ("2024-05-01T12:00:00", MAY_1),  # no zone: UTC
        ("2024-05-01", MAY_1 - 12 * 3600),
        (MAY_1, MAY_1),
        (int(MAY_1), MAY_1),
        ("1714564800", MAY_1),
        (datetime(2024, 5, 1, 12, tzinfo=timezone.utc), MAY_1),
    ],
)
def test_timestamps_in_iso_8601_or_epoch_seconds(value, expected):
    assert parse_timestamp(value) == expected


def test_missing_timestamp_means_now():
    assert parse_timestamp(None, now=MAY_1) == MAY_1
    assert parse_timestamp("", now=MAY_1) == MAY_1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kind", "wishlist", "event kind must be one of"),
        ("kind", None, "event kind must be one of"),
        ("weight", "nan", "finite number"),
        ("weight", 0, "finite number"),
        ("weight", 1000, "finite number"),
        ("weight", True, "must be a number"),
        ("weight", "heavy", "must be a number"),
        ("timestamp", "yesterday", "neither ISO 8601"),
        ("timestamp", MAY_1 * 1000, "milliseconds"),
        ("timestamp", "1999-12-31", "outside the accepted range"),
        ("timestamp", datetime.now(timezone.utc) + timedelta(days=3), "outside the accepted"),
        ("user_id", "", "user id must be a non-empty string"),
        ("user_id", "bad\nid", "printable"),
        ("user_id", "x" * 300, "at most 256"),
    ],
)
def test_bad_fields_are_refused_with_a_clear_message(field, value, message):
    fields = {"user_id": "u-1", "item_id": "sku-1", "kind": "like", field: value}
    with pytest.raises(ValueError, match=message):
        make_event(
            fields["user_id"],
            fields["item_id"],
            fields["kind"],
            timestamp=fields.get("timestamp"),
            weight=fields.get("weight"),
            known_items=ITEMS,
        )


@pytest.mark.parametrize("value", ["2999-01-01", "9999-12-31T00:00:00Z", 1e14])
def test_a_far_future_time_is_called_future_not_milliseconds(value):
    with pytest.raises(BadEventError, match="is in the future") as caught:
        parse_timestamp(value, now=MAY_1)
    assert "milliseconds" not in str(caught.value) and len(str(caught.value)) < 200


@pytest.mark.parametrize("value", [MAY_1 * 1000, int(MAY_1) * 1000 + 250, "1714564800000"])
def test_epoch_milliseconds_are_refused_with_the_seconds_to_give(value):
    seconds = float(value) / 1000
    with pytest.raises(BadEventError, match="looks like milliseconds") as caught:
        parse_timestamp(value, now=MAY_1)
    assert f"give epoch seconds: {seconds:.3f}".rstrip("0").rstrip(".") in str(caught.value)
    assert parse_timestamp(seconds, now=MAY_1) == seconds  # the hint is accepted
    with pytest.raises(BadEventError, match="before 2000-01-01"):
        parse_timestamp(seconds / 1000, now=MAY_1)  # seconds read as ms: far in the past


def test_event_errors_are_the_library_s_own():
    assert issubclass(BadEventError, StylefinderError) and issubclass(BadEventError, ValueError)
    with pytest.raises(BadEventError, match="not a finite number"):
        parse_timestamp(10**400)  # too large for a float
    with pytest.raises(BadEventError, match="header is unreadable"):
        EventStore("unused").import_csv(b"user_id,item_id," + b"k" * 200_000, known_items=ITEMS)


def test_an_unknown_item_is_refused_and_a_batch_is_all_or_nothing(events, index):
    with pytest.raises(UnknownItemError, match="no item 'sku-404'"):
        events.add_event("u-1", "sku-404", "like", known_items=index.snapshot())
    batch = [{"item_id": "sku-1", "kind": "like"}, {"item_id": "sku-404", "kind": "like"}]
    with pytest.raises(UnknownItemError, match="event 1: no item 'sku-404'"):
        events.add_events("u-1", batch, known_items=index.snapshot())
    with pytest.raises(ValueError, match="event 0: unknown field"):
        events.add_events("u-1", [{"item_id": "sku-1", "kind": "like", "x": 1}], known_items=ITEMS)
    assert events.events("u-1") == [] and events.users() == []


CSV = """user_id,item_id,kind,timestamp,weight
alice,sku-1,like,2024-05-01T12:00:00Z,
alice,sku-404,like,2024-05-01T12:00:00Z,
bob,sku-2,purchase,1714564800,2

bob,sku-3,wishlist,,
bob,sku-3,view,,-1
carol,sku-4,view
carol,sku-5,dislike,someday,
carol,sku-5,add_to_cart,,
"""


def test_import_rejects_bad_rows_and_keeps_the_rest(events, index):
    summary = events.import_csv(io.StringIO(CSV), known_items=index.snapshot())
    assert summary.added == 3
    lines = {line: reason for line, reason in summary.rejected}
    assert sorted(lines) == [3, 6, 7, 8, 9]
    assert "no item 'sku-404'" in lines[3]
    assert "event kind must be one of" in lines[6]
    assert "weight" in lines[7]
    assert "expected 5 fields, found 3" in lines[8]
    assert "timestamp 'someday'" in lines[9]
    assert summary.rejected_total == 5
    assert [e.kind for e in events.events("bob")] == ["purchase"]
    assert events.events("bob")[0].weight == 2.0
    assert [e.kind for e in events.events("carol")] == ["add_to_cart"]
    assert events.users() == ["alice", "bob", "carol"]


def test_import_from_a_file_or_bytes_and_header_checks(events, index, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("\ufeffUser_ID,item_id,kind\nalice,sku-1,like\n", encoding="utf-8")
    assert events.import_csv(path, known_items=index.snapshot()).added == 1
    data = b"user_id,item_id,kind\nbob,sku-2,view\n"
    assert events.import_csv(data, known_items=ITEMS).added == 1
    for bad in (b"", b"user,item,kind\nalice,sku-1,like\n", b"user_id,item_id,kind,kind\n"):
        with pytest.raises(ValueError, match="CSV"):
            events.import_csv(bad, known_items=ITEMS)
    assert len(events.events("alice")) == 1 and len(events.events("bob")) == 1


def test_concurrent_writers_lose_no_event(index: IndexStore):
    threads, per_thread = 8, 50
    snapshot = index.snapshot()
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def shopper(n: int) -> None:
        store = EventStore(index.directory)  # one store each, as separate processes would
        try:
            start.wait()
            for i in range(per_thread):
                store.add_event(f"u-{n % 3}", ITEMS[i % len(ITEMS)], "view", known_items=snapshot)
        except BaseException as exc:  # report it in the main thread
            errors.append(exc)

    def catalog_commit() -> None:
        start.wait()
        with index.writer() as writer:  # the catalog changes meanwhile; events must survive
            writer.put(Item("sku-new", "new.png", "f" * 64), np.array([1, 0, 0, 0], np.float32))

    workers = [threading.Thread(target=shopper, args=(n,)) for n in range(threads)]
    workers.append(threading.Thread(target=catalog_commit))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    store = EventStore(index.directory)
    assert sum(len(store.events(user)) for user in store.users()) == threads * per_thread
    assert len(index.snapshot()) == len(ITEMS) + 1


def _raw_bytes(directory: Path, file: str = SHOPPERS_FILE) -> bytes:
    return b"".join(
        (directory / name).read_bytes()
        for name in (file, file + "-wal")
        if (directory / name).exists()
    )


def test_deleting_a_user_removes_every_event_row_and_byte(events, index):
    secret = "erase-me-7f3a9c"
    for kind in ("view", "like", "purchase", "dislike"):
        events.add_event(secret, "sku-1", kind, known_items=ITEMS)
    idle = sqlite3.connect(index.directory / SHOPPERS_FILE)  # keeps the write-ahead log alive
    idle.execute("SELECT 1 FROM events").fetchall()
    events.add_event("keep-me", "sku-2", "like", known_items=ITEMS)
    for n in range(30):  # enough interleaved rows that table and index pages split
        batch = [{"item_id": ITEMS[i % 6], "kind": "view"} for i in range(20)]
        events.add_events(secret if n % 2 else f"other-{n}", batch, known_items=ITEMS)
    token = events.create_token(secret)
    assert secret.encode() in _raw_bytes(index.directory)
    assert secret.encode() not in _raw_bytes(index.directory, MANIFEST_FILE)  # the catalog's

    assert events.delete_user(secret) == {"users": 1, "events": 4 + 15 * 20}
    assert events.events(secret) == [] and secret not in events.users()
    assert not events.verify_token(secret, token)
    with pytest.raises(UnknownUserError, match=secret):
        events.export_user(secret)
    with sqlite3.connect(index.directory / SHOPPERS_FILE) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in con.execute(f"SELECT * FROM {table}"):
                assert secret not in map(str, row), table
    assert secret.encode() not in _raw_bytes(index.directory)  # overwritten, not just unlinked
    idle.close()
    assert len(events.events("keep-me")) == 1
    assert events.delete_user(secret) == {"users": 0, "events": 0}


def test_tokens_are_per_user_hashed_and_rotated(events, index):
    token = events.create_token("alice")
    other = events.create_token("bob")
    assert events.verify_token("alice", token) and events.verify_token("bob", other)
    assert not events.verify_token("bob", token) and not events.verify_token("alice", other)
    assert not events.verify_token("alice", "") and not events.verify_token("alice", token + "x")
    assert not events.verify_token("carol", token) and not events.verify_token("\n", token)
    assert token.encode() not in _raw_bytes(index.directory)  # only its hash is kept
    newer = events.create_token("alice")
    assert events.verify_token("alice", newer) and not events.verify_token("alice", token)
    assert events.revoke_token("alice") and not events.verify_token("alice", newer)
    assert not events.revoke_token("alice")


def test_export_has_everything_but_the_token(events, index):
    events.add_event("alice", "sku-1", "like", timestamp=MAY_1, known_items=ITEMS)
    events.create_token("alice")
    exported = events.export_user("alice")
    assert exported["user"]["id"] == "alice" and exported["user"]["has_token"]
    assert "token_hash" not in exported["user"]
    assert exported["events"] == [
        {
            "id": exported["events"][0]["id"],
            "user_id": "alice",
            "item_id": "sku-1",
            "kind": "like",
            "timestamp": "2024-05-01T12:00:00+00:00",
            "weight": 1.0,
        }
    ]


def test_item_counts_and_catalog_commits_keep_events(events, index):
    events.add_event("a", "sku-1", "purchase", known_items=ITEMS)
    events.add_event("b", "sku-1", "purchase", known_items=ITEMS)
    events.add_event("b", "sku-2", "view", known_items=ITEMS)
    assert events.item_counts(max_age_s=0) == {"sku-1": {"purchase": 2}, "sku-2": {"view": 1}}
    with index.writer() as writer:
        writer.remove("sku-2")
    assert len(events.events("b")) == 2  # a catalog commit leaves the event tables alone


_OLD_SCHEMA = """
CREATE TABLE users (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, token_hash TEXT,
    token_created_at TEXT);
CREATE TABLE events (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, item_id TEXT NOT NULL,
    kind TEXT NOT NULL, ts REAL NOT NULL, weight REAL NOT NULL DEFAULT 1.0,
    recorded_at TEXT NOT NULL);
CREATE INDEX events_user ON events (user_id, ts);
CREATE INDEX events_item ON events (item_id);
"""


def test_shoppers_kept_in_an_older_indexs_manifest_move_to_their_own_file(index):
    """Indexes made before the shoppers' file kept users and events in manifest.sqlite (the
    tables as the earlier `EventStore` created them): the first use moves them, token included,
    and erases them from the manifest."""
    secret = "moved-shopper-5d1e"
    with sqlite3.connect(index.directory / MANIFEST_FILE) as con:
        con.executescript(_OLD_SCHEMA)
        con.execute(
            "INSERT INTO users VALUES (?, '2026-11-01T10:00:00+00:00', ?, '2026-11-01')",
            (secret, "0" * 64),
        )
        con.executemany(
            "INSERT INTO events (user_id, item_id, kind, ts, weight, recorded_at) "
            "VALUES (?, ?, ?, ?, 1.0, '2026-11-01T10:00:00+00:00')",
            [(secret, f"sku-{n % 6}", "like", 1_761_990_000.0 + n) for n in range(50)],
        )
    assert secret.encode() in _raw_bytes(index.directory, MANIFEST_FILE)
    store = EventStore(index.directory)
    moved = store.events(secret)
    assert len(moved) == 50 and {e.kind for e in moved} == {"like"} and store.has_user(secret)
    assert [e.timestamp for e in moved] == sorted(1_761_990_000.0 + n for n in range(50))
    with sqlite3.connect(index.directory / MANIFEST_FILE) as con:
        left = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert not left & {"users", "events"} and "items" in left
    assert secret.encode() not in _raw_bytes(index.directory, MANIFEST_FILE)  # overwritten
    assert len(index.snapshot()) == len(ITEMS)  # the catalog itself untouched
    again = EventStore(index.directory)  # a second opening finds nothing left to move
    assert len(again.events(secret)) == 50
