"""Reading shoppers' events from CSV (header `user_id,item_id,kind[,timestamp][,weight]`),
for any `EventStore`: validated events in batches, bad rows counted in an `ImportSummary`.

Example:
    >>> summary = ImportSummary()
    >>> data = b"user_id,item_id,kind\\nu-1,sku-1,like\\nu-1,sku-9,like\\n"
    >>> [len(b) for b in csv_batches(data, known_items={"sku-1"}, summary=summary)]
    [1]
    >>> summary.rejected
    [(3, "no item 'sku-9' in the index")]
"""

from __future__ import annotations

import contextlib
import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

from stylefinder.errors import UnknownItemError
from stylefinder.shoppers.base import (
    BadEventError,
    CsvSource,
    Event,
    ImportSummary,
    KnownItems,
)
from stylefinder.shoppers.validation import make_event

CSV_COLUMNS = ("user_id", "item_id", "kind", "timestamp", "weight")
IMPORT_BATCH = 5000  # rows per batch (a store writes one transaction each)


def csv_batches(
    source: CsvSource,
    *,
    known_items: KnownItems,
    summary: ImportSummary,
    batch_size: int = IMPORT_BATCH,
) -> Iterator[list[Event]]:
    """The valid events of a CSV, `batch_size` at a time; each bad row (unknown item, bad kind,
    weight or time, wrong number of fields, unreadable) goes to `summary.reject` with its line
    number. A header without the required columns, an empty file or text that is not UTF-8
    raise `BadEventError` before the first batch. `source` is a file path, the CSV's bytes, or
    an open text file.

    Example:
        >>> summary = ImportSummary()
        >>> for batch in csv_batches("events.csv", known_items=snapshot, summary=summary):
        ...     summary.added += len(store_them(batch))  # doctest: +SKIP
    """
    with _open_text(source) as text:
        reader = csv.reader(text)
        header = _read_header(reader)
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
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


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
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        raise BadEventError(
            f"the CSV header must name user_id, item_id and kind, optionally timestamp and "
            f"weight, each once; got {','.join(header)}"
        )
    return header
