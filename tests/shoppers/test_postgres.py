"""The PostgreSQL event store: the contract, and what only a server does (replicas sharing a
schema, a shared pool, a server that is down or drops the connection mid-call)."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from datetime import datetime, timezone

import pytest
from event_store_contract import ITEMS, MAY_1, EventStoreContract

from stylefinder.errors import DatabaseError
from stylefinder.index.pg_connect import connect, open_pool, parse_url
from stylefinder.shoppers.postgres import PostgresEventStore


def _url(postgres_url: str, schema: str, *, password: str = "") -> str:
    # The test server trusts its unix socket, so a password in the URL is accepted and ignored:
    # it lets a test check that messages never show it.
    url = (
        postgres_url.replace("postgres:@", f"postgres:{password}@", 1) if password else postgres_url
    )
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


@pytest.fixture
def schema(request, postgres_url) -> str:
    """A schema of this test's own (dropped afterwards)."""
    name = "ev_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
    yield name
    with connect(parse_url(postgres_url)) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def store_factory(postgres_url, schema):
    """Opens new stores over the test's schema, as separate processes would; closes them."""
    opened: list[PostgresEventStore] = []
    lock = threading.Lock()

    def open_store(**options) -> PostgresEventStore:
        store = PostgresEventStore(_url(postgres_url, schema), timeout=10, **options)
        with lock:
            opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store_factory(self, store_factory):
        return store_factory


def test_two_replicas_see_each_others_events_and_tokens(store_factory):
    first, second = store_factory(), store_factory()
    first.add_event("u-1", "sku-1", "like", timestamp=MAY_1, known_items=ITEMS)
    second.add_events(
        "u-1",
        [{"item_id": "sku-2", "kind": "purchase", "timestamp": MAY_1 - 60}],
        known_items=ITEMS,
    )
    for store in (first, second):
        assert [(e.item_id, e.timestamp) for e in store.events("u-1")] == [
            ("sku-2", MAY_1 - 60),
            ("sku-1", MAY_1),
        ]
        assert store.item_counts(max_age_s=0) == {"sku-1": {"like": 1}, "sku-2": {"purchase": 1}}
    token = second.create_token("u-1")
    assert first.verify_token("u-1", token)
    assert first.delete_user("u-1") == {"users": 1, "events": 2}
    assert not second.has_user("u-1") and not second.verify_token("u-1", token)


def test_export_times_are_iso_utc_seconds_like_the_sqlite_store(store_factory):
    store = store_factory()
    store.add_event("alice", "sku-1", "like", known_items=ITEMS)
    store.create_token("alice")
    exported = store.export_user("alice")
    now = datetime.now(timezone.utc).timestamp()
    for key in ("created_at", "token_created_at"):
        text = exported["user"][key]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", text), text
        assert abs(datetime.fromisoformat(text).timestamp() - now) < 60
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", exported["exported_at"])
    store.revoke_token("alice")
    assert store.export_user("alice")["user"]["token_created_at"] is None


def test_an_import_of_several_batches_keeps_every_row(store_factory, report):
    store = store_factory()
    rows = 12_000  # csv_events.IMPORT_BATCH is 5,000: three transactions
    lines = ["user_id,item_id,kind,timestamp,weight"]
    lines += [f"u-{n % 7},{ITEMS[n % 6]},view,{MAY_1 + n},{1 + n % 3}" for n in range(rows)]
    started = time.perf_counter()
    summary = store.import_csv(("\n".join(lines) + "\n").encode(), known_items=ITEMS)
    seconds = time.perf_counter() - started
    assert (summary.added, summary.rejected_total) == (rows, 0)
    assert sum(store.item_counts(max_age_s=0)[item]["view"] for item in ITEMS) == rows
    events = store.events("u-3")
    assert [e.timestamp for e in events] == [MAY_1 + n for n in range(rows) if n % 7 == 3]
    assert [e.weight for e in events[:3]] == [1.0 + n % 3 for n in (3, 10, 17)]
    report("postgres events import", f"{rows} rows in {seconds:.2f} s")


def test_a_server_that_is_down_gets_a_clear_error(tmp_path):
    store = PostgresEventStore(
        f"postgresql://shop:secret@/catalog?host={tmp_path}&schema=shop", timeout=2
    )
    for call in (store.users, lambda: store.add_event("u-1", "sku-1", "like", known_items=ITEMS)):
        with pytest.raises(DatabaseError, match="cannot connect to the PostgreSQL server") as error:
            call()
        assert "secret" not in str(error.value) and "shop:***@" in str(error.value)
    store.close()


def test_a_connection_dropped_mid_call_is_a_database_error_and_the_next_call_works(
    postgres_url, schema
):
    url = _url(postgres_url, schema, password="secret")
    store = PostgresEventStore(url, timeout=10)
    store.add_event("u-1", "sku-1", "like", known_items=ITEMS)  # migrated, connection pooled
    outcome: list[BaseException | list] = []
    target = parse_url(postgres_url)
    with connect(target) as blocker, connect(target) as watcher, blocker.transaction():
        blocker.execute(f"LOCK TABLE {schema}.events IN ACCESS EXCLUSIVE MODE")
        reader = threading.Thread(target=_call, args=(lambda: store.events("u-1"), outcome))
        reader.start()
        pid = _waiting_on_a_lock(watcher, schema)
        watcher.execute("SELECT pg_terminate_backend(%s)", (pid,))
        reader.join(timeout=10)
    assert not reader.is_alive() and len(outcome) == 1
    error = outcome[0]
    assert isinstance(error, DatabaseError), error
    assert "failed while reading events" in str(error) and "postgres:***@" in str(error)
    assert "terminating connection due to administrator command" in str(error)
    assert "secret" not in str(error)
    assert [e.item_id for e in store.events("u-1")] == ["sku-1"]  # the pool made a new one
    store.close()


def test_a_store_on_a_shared_pool_leaves_it_open(postgres_url, schema):
    target = parse_url(_url(postgres_url, schema))
    with open_pool(target, max_size=2) as pool:
        store = PostgresEventStore(target, pool=pool)
        store.add_event("u-1", "sku-1", "like", known_items=ITEMS)
        store.close()
        assert not pool.closed
        with pool.connection() as conn:
            count = conn.execute(f"SELECT count(*) FROM {schema}.events").fetchone()
        assert count == (1,)
        with pytest.raises(DatabaseError, match="closed"):
            store.users()
        assert PostgresEventStore(target, pool=pool).users() == ["u-1"]


def test_a_pool_with_no_free_connection_in_time_is_a_database_error(postgres_url, schema):
    target = parse_url(_url(postgres_url, schema))
    with open_pool(target, max_size=1) as pool:
        store = PostgresEventStore(target, pool=pool, timeout=0.5)
        assert store.users() == []  # migrated
        busy = pytest.raises(DatabaseError, match="failed while listing shoppers")
        with pool.connection(), busy:  # the pool's only connection is in use elsewhere
            store.users()
        assert store.users() == []


def test_an_erased_shopper_is_in_no_table_of_the_schema(store_factory, postgres_url, schema):
    store = store_factory()
    secret = "erase-me-7f3a9c"
    store.add_events(secret, [{"item_id": "sku-1", "kind": "view"}] * 30, known_items=ITEMS)
    store.create_token(secret)
    store.add_event("keep-me", "sku-2", "like", known_items=ITEMS)
    assert store.delete_user(secret) == {"users": 1, "events": 30}
    with connect(parse_url(postgres_url)) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
        assert {"users", "events"} <= {name for (name,) in tables}
        for (table,) in tables:
            rows = conn.execute(f"SELECT t::text FROM {schema}.{table} t").fetchall()
            assert not [row for (row,) in rows if secret in row], table
            if table == "users":
                assert [row for (row,) in rows if "keep-me" in row]


def _call(function, outcome: list) -> None:
    try:
        outcome.append(function())
    except BaseException as exc:  # report it in the main thread
        outcome.append(exc)


def _waiting_on_a_lock(watcher, schema: str, timeout: float = 10.0) -> int:
    """The backend pid of the query on `schema`.events waiting for a lock (polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = watcher.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            (f'%"{schema}".events%',),
        ).fetchone()
        if row is not None:
            return row[0]
        time.sleep(0.01)
    raise AssertionError("no query waited for the lock")
