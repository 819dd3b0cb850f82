"""The tests every `EventStore` implementation passes (as implicit's recommender_base_test).

Subclass `EventStoreContract` in a test_*.py file and give it a `store_factory` fixture: a
callable that opens a new store over the same, initially empty, data (as another process would).

Example:
    class TestMyEventStore(EventStoreContract):
        @pytest.fixture
        def store_factory(self, tmp_path):
            return lambda: MyEventStore(tmp_path)
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable

import pytest

from stylefinder.errors import UnknownItemError, UnknownUserError
from stylefinder.shoppers.base import BadEventError, EventStore

ITEMS = [f"sku-{n}" for n in range(6)]
MAY_1 = 1714564800.0  # 2024-05-01T12:00:00Z

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


class EventStoreContract:
    """Behaviour shared by every event store; subclasses provide `store_factory`."""

    @pytest.fixture
    def store_factory(self) -> Callable[[], EventStore]:
        raise NotImplementedError("an EventStore's test class provides store_factory")

    @pytest.fixture
    def store(self, store_factory) -> EventStore:
        return store_factory()

    def test_it_is_an_event_store(self, store: EventStore):
        assert isinstance(store, EventStore)  # every method of the protocol is there

    def test_events_round_trip_oldest_first(self, store: EventStore):
        store.add_event("u-1", "sku-2", "purchase", timestamp=MAY_1 + 60, known_items=ITEMS)
        stored = store.add_events(
            "u-1",
            [
                {"item_id": "sku-1", "kind": "View", "timestamp": "2024-05-01T12:00:00Z"},
                {"item_id": "sku-3", "kind": "like", "weight": "2.5"},
            ],
            known_items=ITEMS,
        )
        assert all(e.id is not None for e in stored)
        got = store.events("u-1")
        assert [(e.item_id, e.kind) for e in got] == [
            ("sku-1", "view"),
            ("sku-2", "purchase"),
            ("sku-3", "like"),
        ]
        assert got[0].timestamp == MAY_1 and got[0].time == "2024-05-01T12:00:00+00:00"
        assert got[2].weight == 2.5 and got[0].weight == 1.0
        assert store.users() == ["u-1"] and store.has_user("u-1") and not store.has_user("u-2")
        assert store.events("nobody") == []

    def test_ids_are_stripped_and_checked(self, store: EventStore):
        store.add_event(" u-1 ", "sku-1", "like", known_items=ITEMS)
        assert store.users() == ["u-1"] and len(store.events("u-1 ")) == 1
        for call in (store.events, store.has_user, store.export_user, store.delete_user):
            with pytest.raises(BadEventError, match="user id must be a non-empty string"):
                call("  ")
        with pytest.raises(BadEventError, match="printable"):
            store.create_token("bad\nid")

    def test_an_unknown_item_is_refused_and_a_batch_is_all_or_nothing(self, store: EventStore):
        with pytest.raises(UnknownItemError, match="no item 'sku-404'"):
            store.add_event("u-1", "sku-404", "like", known_items=ITEMS)
        batch = [{"item_id": "sku-1", "kind": "like"}, {"item_id": "sku-404", "kind": "like"}]
        with pytest.raises(UnknownItemError, match="event 1: no item 'sku-404'"):
            store.add_events("u-1", batch, known_items=ITEMS)
        with pytest.raises(ValueError, match="event 0: unknown field"):
            store.add_events(
                "u-1", [{"item_id": "sku-1", "kind": "like", "x": 1}], known_items=ITEMS
            )
        with pytest.raises(BadEventError, match="event 1: event kind must be one of"):
            store.add_events(
                "u-1",
                [{"item_id": "sku-1", "kind": "like"}, {"item_id": "sku-1", "kind": "wish"}],
                known_items=ITEMS,
            )
        assert store.events("u-1") == [] and store.users() == []

    def test_import_rejects_bad_rows_and_keeps_the_rest(self, store: EventStore):
        summary = store.import_csv(io.StringIO(CSV), known_items=ITEMS)
        assert summary.added == 3
        lines = {line: reason for line, reason in summary.rejected}
        assert sorted(lines) == [3, 6, 7, 8, 9]
        assert "no item 'sku-404'" in lines[3]
        assert "event kind must be one of" in lines[6]
        assert "weight" in lines[7]
        assert "expected 5 fields, found 3" in lines[8]
        assert "timestamp 'someday'" in lines[9]
        assert summary.rejected_total == 5
        assert [e.kind for e in store.events("bob")] == ["purchase"]
        assert store.events("bob")[0].weight == 2.0
        assert [e.kind for e in store.events("carol")] == ["add_to_cart"]
        assert store.users() == ["alice", "bob", "carol"]

    def test_import_from_a_file_or_bytes_and_header_checks(self, store: EventStore, tmp_path):
        path = tmp_path / "events.csv"
        path.write_text("\ufeffUser_ID,item_id,kind\nalice,sku-1,like\n", encoding="utf-8")
        assert store.import_csv(path, known_items=ITEMS).added == 1
        data = b"user_id,item_id,kind\nbob,sku-2,view\n"
        assert store.import_csv(data, known_items=ITEMS).added == 1
        for bad in (b"", b"user,item,kind\nalice,sku-1,like\n", b"user_id,item_id,kind,kind\n"):
            with pytest.raises(ValueError, match="CSV"):
                store.import_csv(bad, known_items=ITEMS)
        with pytest.raises(BadEventError, match="header is unreadable"):
            store.import_csv(b"user_id,item_id," + b"k" * 200_000, known_items=ITEMS)
        with pytest.raises(BadEventError, match="not UTF-8"):
            store.import_csv(b"user_id,item_id,kind\n\xff,sku-1,like\n", known_items=ITEMS)
        assert len(store.events("alice")) == 1 and len(store.events("bob")) == 1

    def test_concurrent_writers_lose_no_event(self, store_factory):
        threads, per_thread = 8, 50
        errors: list[BaseException] = []
        start = threading.Barrier(threads)

        def shopper(n: int) -> None:
            store = store_factory()  # one store each, as separate processes would
            try:
                start.wait()
                for i in range(per_thread):
                    store.add_event(f"u-{n % 3}", ITEMS[i % len(ITEMS)], "view", known_items=ITEMS)
            except BaseException as exc:  # report it in the main thread
                errors.append(exc)

        workers = [threading.Thread(target=shopper, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert not errors
        store = store_factory()
        assert sum(len(store.events(user)) for user in store.users()) == threads * per_thread

    def test_deleting_a_user_erases_events_record_and_token(self, store: EventStore):
        secret = "erase-me-7f3a9c"
        for kind in ("view", "like", "purchase", "dislike"):
            store.add_event(secret, "sku-1", kind, known_items=ITEMS)
        store.add_event("keep-me", "sku-2", "like", known_items=ITEMS)
        token = store.create_token(secret)
        assert store.item_counts(max_age_s=0)["sku-1"] == {
            k: 1 for k in ("view", "like", "purchase", "dislike")
        }

        assert store.delete_user(secret) == {"users": 1, "events": 4}
        assert store.events(secret) == [] and store.users() == ["keep-me"]
        assert not store.has_user(secret) and not store.verify_token(secret, token)
        assert "sku-1" not in store.item_counts()  # no stale popularity after an erasure
        with pytest.raises(UnknownUserError, match=secret):
            store.export_user(secret)
        assert len(store.events("keep-me")) == 1
        assert store.delete_user(secret) == {"users": 0, "events": 0}

    def test_tokens_are_per_user_and_rotated(self, store: EventStore):
        token = store.create_token("alice")
        other = store.create_token("bob")
        assert store.has_user("alice") and store.events("alice") == []
        assert store.verify_token("alice", token) and store.verify_token("bob", other)
        assert not store.verify_token("bob", token) and not store.verify_token("alice", other)
        assert not store.verify_token("alice", "") and not store.verify_token("alice", token + "x")
        assert not store.verify_token("carol", token) and not store.verify_token("\n", token)
        newer = store.create_token("alice")
        assert store.verify_token("alice", newer) and not store.verify_token("alice", token)
        assert store.revoke_token("alice") and not store.verify_token("alice", newer)
        assert not store.revoke_token("alice") and store.has_user("alice")

    def test_export_has_everything_but_the_token(self, store: EventStore):
        store.add_event("alice", "sku-1", "like", timestamp=MAY_1, known_items=ITEMS)
        token = store.create_token("alice")
        exported = store.export_user("alice")
        assert exported["user"]["id"] == "alice" and exported["user"]["has_token"]
        assert exported["user"]["created_at"] and exported["user"]["token_created_at"]
        assert "token_hash" not in exported["user"] and token not in str(exported)
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
        assert set(exported) == {"user", "events", "exported_at"}

    def test_item_counts_over_all_shoppers(self, store: EventStore):
        assert store.item_counts(max_age_s=0) == {}
        store.add_event("a", "sku-1", "purchase", known_items=ITEMS)
        store.add_event("b", "sku-1", "purchase", known_items=ITEMS)
        store.add_event("b", "sku-2", "view", known_items=ITEMS)
        assert store.item_counts(max_age_s=0) == {"sku-1": {"purchase": 2}, "sku-2": {"view": 1}}
