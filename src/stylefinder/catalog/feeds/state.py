"""What a feed sync remembers between runs, in `<index>/feed/state.json`: for each image kept
(one per product photo, by item id) where its file is, the URL it came from, the ETag and
Last-Modified of the answer and the content hash; and for each URL that failed, why and how
often. Written atomically (a temporary file, fsync, `os.replace`, fsync of the folder), so a
killed run leaves the previous state or the new one, never half of one.

Example:
    >>> state = load_state("shop-index/feed/state.json")  # doctest: +SKIP
    >>> state.images["sku-1#1"].url  # doctest: +SKIP
    'https://cdn.shop.example/sku-1.jpg'
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

STATE_VERSION = 1


@dataclass
class ImageRecord:
    """One kept image: its product and position, its file (relative to the images folder),
    and what its last download said (validators for the next conditional GET)."""

    product_id: str
    position: int
    url: str
    file: str
    sha256: str
    etag: str | None = None
    last_modified: str | None = None
    size: int = 0
    fetched_at: str = ""


@dataclass
class FailureRecord:
    """A URL whose last fetch failed: the reason, the detail, since when, how many runs."""

    reason: str
    detail: str
    first_failed_at: str
    last_failed_at: str
    runs: int = 1


@dataclass
class FeedState:
    """Everything a sync keeps between runs (see the module docstring)."""

    images: dict[str, ImageRecord] = field(default_factory=dict)
    failures: dict[str, FailureRecord] = field(default_factory=dict)
    feed: str = ""
    synced_at: str = ""
    note: str | None = None  # why an unreadable state file was set aside


def load_state(path: str | Path) -> FeedState:
    """The state saved at `path`; an empty one when there is none. A damaged or unknown file
    is renamed `<name>.damaged` and an empty state returned (every image is then fetched
    again, without conditional headers), with `note` saying so.

    Example:
        >>> load_state("/nonexistent/state.json").images
        {}
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"version {raw.get('version')!r}, expected {STATE_VERSION}")
        return FeedState(
            images={k: ImageRecord(**v) for k, v in raw["images"].items()},
            failures={k: FailureRecord(**v) for k, v in raw["failures"].items()},
            feed=raw.get("feed", ""),
            synced_at=raw.get("synced_at", ""),
        )
    except FileNotFoundError:
        return FeedState()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        aside = path.with_name(path.name + ".damaged")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        return FeedState(note=f"{path} was unreadable ({error}); set aside as {aside.name}")


def save_state(path: str | Path, state: FeedState) -> None:
    """Write `state` to `path` atomically (see the module docstring).

    Example:
        >>> save_state("shop-index/feed/state.json", FeedState())  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = {"version": STATE_VERSION, "feed": state.feed, "synced_at": state.synced_at}
    parts = [_dumps(head)[:-1]]
    for name, records in (("images", state.images), ("failures", state.failures)):
        body = ",\n".join(f"  {_dumps(k)}: {_dumps(vars(v))}" for k, v in sorted(records.items()))
        parts.append(f'"{name}": {{\n{body}\n }}')
    write_atomic(path, (",\n ".join(parts) + "}\n").encode("utf-8"))


def _dumps(value: object) -> str:
    """One JSON value on one line, by the C encoder (an indented dump runs the Python one,
    several times slower)."""
    return json.dumps(value, ensure_ascii=False)


def write_atomic(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` in one step: a hidden temporary file in the same folder,
    `os.replace`, and with `durable` an fsync of the file and of the folder first and after
    (images skip it: a sync checks each kept file's size and fetches a damaged one again).

    Example:
        >>> write_atomic("shop-index/feed/images/sku-1/1.jpg", b"...")  # doctest: +SKIP
    """
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_folder(path.parent)


def fsync_folder(folder: str | Path) -> None:
    """Make a folder's entries (a rename, a new file) durable; a no-op where unsupported."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
