"""The event store's contract: the `EventStore` protocol and the data it takes and gives.

An event says that a shopper viewed, liked, disliked, added to the cart or bought an item at a
moment (UTC), with an optional weight (a multiplier, 1 by default). Events name items that exist
in the index when they are recorded; events of items removed later are ignored by the ranking.
Every implementation (`stylefinder.shoppers.sqlite.SqliteEventStore` today) validates with
`stylefinder.shoppers.validation`, so they accept and refuse the same events with the same
messages; tests/shoppers/event_store_contract.py holds the tests each must pass.

Example:
    >>> from stylefinder.shoppers.sqlite import SqliteEventStore
    >>> store: EventStore = SqliteEventStore("shop-index")  # doctest: +SKIP
    >>> store.add_events("u-1", [{"item_id": "dress-12", "kind": "like"}],
    ...                  known_items={"dress-12"})  # doctest: +SKIP
    [Event(user_id='u-1', item_id='dress-12', kind='like', ...)]
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, TextIO, runtime_checkable

from stylefinder.errors import StylefinderError
from stylefinder.index.snapshot import Snapshot

#: The kinds of event a shopper can cause.
EVENT_KINDS = ("view", "like", "dislike", "add_to_cart", "purchase")
MAX_ID_LENGTH = 256
MAX_WEIGHT = 100.0
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()
FUTURE_SLACK_S = 86_400.0  # clocks disagree; an event may be up to a day "in the future"
MAX_REJECTED_KEPT = 1000  # rejected CSV rows described in an ImportSummary (all are counted)

KnownItems = Container[str] | Snapshot  # the item ids events may name
CsvSource = str | Path | bytes | TextIO  # a file path, the file's bytes, or an open text file


class BadEventError(StylefinderError, ValueError):
    """An event, a shopper id or an events CSV cannot be used (bad kind, weight or time, a
    malformed id, a CSV that is not UTF-8 or lacks the required header); the message says which
    and how to fix it."""


def iso_time(seconds: float) -> str:
    """Epoch seconds as an ISO-8601 UTC string.

    Example:
        >>> iso_time(1714564800)
        '2024-05-01T12:00:00+00:00'
    """
    stamp = datetime.fromtimestamp(seconds, timezone.utc)
    return stamp.isoformat(timespec="seconds" if stamp.microsecond == 0 else "milliseconds")


@dataclass(frozen=True)
class Event:
    """One thing a shopper did. `timestamp` is seconds since the epoch (UTC); `id` is set once
    stored.

    Example:
        >>> Event("u-1", "sku-1", "like", 1714564800.0).to_dict()["timestamp"]
        '2024-05-01T12:00:00+00:00'
    """

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

    Example:
        >>> summary = ImportSummary(added=2)
        >>> summary.reject(3, "no item 'sku-404' in the index")
        >>> summary.to_dict()["rejected_total"]
        1
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


@runtime_checkable
class EventStore(Protocol):
    """Shoppers, their events and their access tokens: what the engine, the CLI, the API and the
    web app read and write. Ids are checked as `validation.check_user_id` does (`BadEventError`);
    an implementation may be shared by many threads.

    Example:
        >>> store.add_event("u-1", "dress-12", "purchase", known_items=snapshot)  # doctest: +SKIP
        >>> [e.kind for e in store.events("u-1")]  # doctest: +SKIP
        ['purchase']
    """

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
        """Validate and store one event (`validation.make_event`); returns it with its id."""
        ...

    def add_events(
        self, user_id: str, events: Iterable[Mapping[str, object]], *, known_items: KnownItems
    ) -> list[Event]:
        """Validate and store a shopper's events, all or none (`validation.check_events`):
        the first bad one raises, naming its position, and nothing is stored."""
        ...

    def import_csv(self, source: CsvSource, *, known_items: KnownItems) -> ImportSummary:
        """Import events from CSV with the header `user_id,item_id,kind[,timestamp][,weight]`
        (`csv_events.csv_batches`): bad rows are rejected with their line number, the rest is
        stored; a bad header raises `BadEventError` and nothing is stored."""
        ...

    def events(self, user_id: str) -> list[Event]:
        """A shopper's events, oldest first (ties in the order stored); empty for an unknown
        shopper."""
        ...

    def users(self) -> list[str]:
        """Every known shopper id, sorted."""
        ...

    def has_user(self, user_id: str) -> bool:
        """True when the shopper has a record (events or a token)."""
        ...

    def item_counts(self, *, max_age_s: float = 30.0) -> dict[str, dict[str, int]]:
        """Events per item and kind over all shoppers ({item_id: {kind: count}}), for
        popularity; may be up to `max_age_s` seconds old (0 reads afresh)."""
        ...

    def export_user(self, user_id: str) -> dict:
        """Everything stored about a shopper, {"user": {"id", "created_at", "has_token",
        "token_created_at"}, "events": [Event.to_dict()...], "exported_at"}, or
        `UnknownUserError`. The token itself is never stored, only whether there is one."""
        ...

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Erase a shopper: events, record and token, leaving no copy in the store's files.
        Returns how many rows went ({"users": 0 or 1, "events": n})."""
        ...

    def create_token(self, user_id: str) -> str:
        """A new secret access token for a shopper (creating their record if needed); only a
        hash is kept (`tokens.token_hash`) and a previous token stops working."""
        ...

    def verify_token(self, user_id: str, token: str) -> bool:
        """True when `token` is the current token of `user_id` (constant-time comparison);
        False for a malformed id or token."""
        ...

    def revoke_token(self, user_id: str) -> bool:
        """Forget a shopper's token; True when there was one."""
        ...
