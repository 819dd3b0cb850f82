"""Checking events before a store keeps them: times, kinds, weights, ids; and tokens' hashes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from event_store_contract import ITEMS, MAY_1

from stylefinder.errors import StylefinderError, UnknownItemError
from stylefinder.shoppers.base import BadEventError, Event, ImportSummary
from stylefinder.shoppers.csv_events import csv_batches
from stylefinder.shoppers.tokens import new_token, token_hash, token_matches
from stylefinder.shoppers.validation import check_events, make_event, parse_timestamp


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
    with pytest.raises(UnknownItemError, match="no item 'sku-9'"):
        make_event("u-1", "sku-9", "like", known_items=ITEMS)


def test_a_batch_is_checked_whole_naming_the_bad_position():
    checked = check_events(" u-1", [{"item_id": "sku-1", "kind": "LIKE"}], known_items=ITEMS)
    assert checked == [Event("u-1", "sku-1", "like", checked[0].timestamp)]
    with pytest.raises(BadEventError, match="event 1: must be an object"):
        check_events("u-1", [{"item_id": "sku-1", "kind": "like"}, "like"], known_items=ITEMS)


def test_csv_rows_come_in_batches_and_bad_rows_in_the_summary():
    rows = "".join(f"u-{n},sku-{n % 6},view\n" for n in range(7))
    summary = ImportSummary()
    data = ("user_id,item_id,kind\n" + rows + "u-x,sku-404,view\n").encode()
    batches = list(csv_batches(data, known_items=ITEMS, summary=summary, batch_size=3))
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert summary.rejected == [(9, "no item 'sku-404' in the index")]


def test_tokens_match_only_their_hash():
    token = new_token()
    assert len(token) >= 43 and token != new_token()
    assert token_matches(token, token_hash(token))
    assert not token_matches(token, None) and not token_matches(token, token_hash("other"))
    assert not token_matches("", token_hash("")) and not token_matches(None, token_hash(token))
