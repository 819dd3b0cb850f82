"""Checking shoppers' events before any store keeps them: ids, kinds, weights and times.

Every `EventStore` implementation validates with these functions, so that all of them accept and
refuse the same events with the same messages (`BadEventError`, `UnknownItemError`).

Example:
    >>> make_event("u-1", "sku-1", "Like", known_items={"sku-1"}).kind
    'like'
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

from stylefinder.errors import UnknownItemError
from stylefinder.index.snapshot import Snapshot
from stylefinder.shoppers.base import (
    EARLIEST,
    EVENT_KINDS,
    FUTURE_SLACK_S,
    MAX_ID_LENGTH,
    MAX_WEIGHT,
    BadEventError,
    Event,
    KnownItems,
    iso_time,
)

EVENT_FIELDS = frozenset({"item_id", "kind", "timestamp", "weight"})


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
        stylefinder.shoppers.base.BadEventError: timestamp '2999-01-01' (...) is in the ...
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


def check_events(
    user_id: object, events: Iterable[Mapping[str, object]], *, known_items: KnownItems
) -> list[Event]:
    """A shopper's events, each a mapping with `item_id` and `kind` and optionally `timestamp`
    and `weight`, all validated: the first bad one raises (`BadEventError` or
    `UnknownItemError`) naming its position.

    Example:
        >>> [e.kind for e in check_events("u-1", [{"item_id": "a", "kind": "view"}],
        ...                                known_items={"a"})]
        ['view']
    """
    user = check_user_id(user_id)
    now = time.time()
    checked = []
    for position, raw in enumerate(events):
        if not isinstance(raw, Mapping):
            raise BadEventError(f"event {position}: must be an object with item_id and kind")
        unknown = sorted(map(str, set(raw) - EVENT_FIELDS))
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
    return checked


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadEventError(f"{what} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH or any(ord(c) < 32 for c in value):
        raise BadEventError(f"{what} must be at most {MAX_ID_LENGTH} printable characters")
    return value.strip()


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
