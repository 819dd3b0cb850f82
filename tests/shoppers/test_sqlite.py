"""The SQLite event store: the contract, and what only SQLite does (its own file beside the
manifest, secure deletion, the move out of an older manifest)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from event_store_contract import ITEMS, EventStoreContract

from stylefinder.errors import IndexStateError
from stylefinder.index.header import MANIFEST_FILE
from stylefinder.index.store import IndexStore
from stylefinder.shoppers.sqlite import SHOPPERS_FILE, SqliteEventStore
from stylefinder.types import Item


class TestSqliteEventStore(EventStoreContract):
    @pytest.fixture
    def store_factory(self, index: IndexStore):
        return lambda: SqliteEventStore(index.directory)


@pytest.fixture
def events(index: IndexStore) -> SqliteEventStore:
    return SqliteEventStore(index.directory)


def _raw_bytes(directory: Path, file: str = SHOPPERS_FILE) -> bytes:
    return b"".join(
        (directory / name).read_bytes()
        for name in (file, file + "-wal")
        if (directory / name).exists()
    )


def test_a_folder_without_an_index_is_refused(tmp_path):
    with pytest.raises(IndexStateError, match="no index at"):
        SqliteEventStore(tmp_path).users()
    assert not (tmp_path / SHOPPERS_FILE).exists()


def test_events_take_a_snapshot_as_the_known_items(events, index):
    events.add_event("u-1", "sku-2", "like", known_items=index.snapshot())
    assert [e.item_id for e in events.events("u-1")] == ["sku-2"]


def test_concurrent_writers_and_a_catalog_commit(index: IndexStore):
    threads, per_thread = 4, 25
    snapshot = index.snapshot()
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def shopper(n: int) -> None:
        store = SqliteEventStore(index.directory)
        try:
            start.wait()
            for i in range(per_thread):
                store.add_event(f"u-{n}", ITEMS[i % len(ITEMS)], "view", known_items=snapshot)
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
    store = SqliteEventStore(index.directory)
    assert sum(len(store.events(user)) for user in store.users()) == threads * per_thread
    assert len(index.snapshot()) == len(ITEMS) + 1


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
    events.create_token(secret)
    assert secret.encode() in _raw_bytes(index.directory)
    assert secret.encode() not in _raw_bytes(index.directory, MANIFEST_FILE)  # the catalog's

    assert events.delete_user(secret) == {"users": 1, "events": 4 + 15 * 20}
    with sqlite3.connect(index.directory / SHOPPERS_FILE) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in con.execute(f"SELECT * FROM {table}"):
                assert secret not in map(str, row), table
    assert secret.encode() not in _raw_bytes(index.directory)  # overwritten, not just unlinked
    idle.close()
    assert len(events.events("keep-me")) == 1


def test_only_a_tokens_hash_is_kept(events, index):
    token = events.create_token("alice")
    assert events.verify_token("alice", token)
    assert token.encode() not in _raw_bytes(index.directory)


def test_catalog_commits_keep_events(events, index):
    events.add_event("b", "sku-1", "purchase", known_items=ITEMS)
    events.add_event("b", "sku-2", "view", known_items=ITEMS)
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
    tables as the earlier event store created them): the first use moves them, token included,
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
    store = SqliteEventStore(index.directory)
    moved = store.events(secret)
    assert len(moved) == 50 and {e.kind for e in moved} == {"like"} and store.has_user(secret)
    assert [e.timestamp for e in moved] == sorted(1_761_990_000.0 + n for n in range(50))
    assert store.export_user(secret)["user"]["has_token"]
    with sqlite3.connect(index.directory / MANIFEST_FILE) as con:
        left = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert not left & {"users", "events"} and "items" in left
    assert secret.encode() not in _raw_bytes(index.directory, MANIFEST_FILE)  # overwritten
    assert len(index.snapshot()) == len(ITEMS)  # the catalog itself untouched
    again = SqliteEventStore(index.directory)  # a second opening finds nothing left to move
    assert len(again.events(secret)) == 50
