"""Index a shop's product feed: fetch its images into the index directory (the catalog
stage, `stylefinder.catalog.feeds.fetch_feed`), then index that folder with its metadata CSV
(`build_index`), committing the feed's removals only once the index accepted them.

One sync of an index runs at a time (`FeedSyncRunningError` otherwise, across processes);
`sync_every` runs one every so often, until interrupted.

Example:
    >>> summary = sync_feed("products_export.csv", "shop-index")  # doctest: +SKIP
    >>> summary.downloaded, summary.failure_counts, summary.index.embedded  # doctest: +SKIP
    (118, {'http 404': 2}, 118)
    >>> sync_every("https://shop.example/feed.xml", "shop-index", 6 * 3600)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from stylefinder.catalog.feeds.download import DownloadOptions
from stylefinder.catalog.feeds.sync import FEED_DIR, FeedFetch, fetch_feed
from stylefinder.errors import NotOnPostgresError, RemovalGuardError, StylefinderError
from stylefinder.index.pg_connect import is_database_url
from stylefinder.jobs.build import IndexSummary, build_index, embedder_for_index
from stylefinder.jobs.embed_ahead import EmbedAhead
from stylefinder.jobs.targets import existing_store

log = logging.getLogger(__name__)

#: The file, in the index's feed folder, that a running sync holds locked.
SYNC_LOCK_FILE = "sync.lock"

#: `confirm(removals, catalog_items)`: asked when a sync would remove more of the index than
#: its guard allows (a truncated or wrong feed); True goes ahead.
ConfirmRemovals = Callable[[list[str], int], bool]


class FeedSyncRunningError(StylefinderError, RuntimeError):
    """Another sync of the same index's feed is running (in this process or another)."""


@dataclass
class FeedSyncSummary:
    """What `sync_feed` did: the feed stage (`fetch`, counted per image URL) and the index
    build (`index`)."""

    fetch: FeedFetch
    index: IndexSummary

    @property
    def downloaded(self) -> int:
        return self.fetch.downloaded

    @property
    def not_modified(self) -> int:
        return self.fetch.not_modified

    @property
    def unchanged(self) -> int:
        return self.fetch.unchanged

    @property
    def failed(self) -> dict[str, list[tuple[str, str]]]:
        return self.fetch.failed

    @property
    def failure_counts(self) -> dict[str, int]:
        return self.fetch.failure_counts

    @property
    def removed(self) -> int:
        return self.index.removed

    def to_dict(self, *, max_failures: int | None = None) -> dict:
        """The summary as plain JSON-able values: the feed stage's counts, `failed` (counts
        by reason), `failures` (url, reason, detail; the first `max_failures`, sorted),
        `removed_ids` and the index build's counts under `index`.

        Example:
            >>> summary.to_dict(max_failures=10)["failed"]  # doctest: +SKIP
            {'http 404': 2}
        """
        fetch, index = self.fetch, self.index
        failures = [
            {"url": url, "reason": reason, "detail": detail}
            for reason, urls in sorted(fetch.failed.items())
            for url, detail in sorted(urls)
        ]
        return {
            "feed": fetch.feed,
            "format": fetch.format,
            "products": fetch.products,
            "images": fetch.images,
            "downloaded": fetch.downloaded,
            "not_modified": fetch.not_modified,
            "unchanged": fetch.unchanged,
            "kept": fetch.kept,
            "failed": fetch.failure_counts,
            "failed_total": len(failures),
            "failures": failures if max_failures is None else failures[:max_failures],
            "retried": fetch.retried,
            "recovered": fetch.recovered,
            "removed": index.removed,
            "removed_ids": list(index.removed_ids),
            "problems": list(fetch.problems),
            "dry_run": index.dry_run,
            "index": {
                "total": index.total,
                "embedded": index.embedded,
                "embedded_while_downloading": index.embedded_ahead,
                "changed": index.changed,
                "reused": index.reused,
                "updated_metadata": index.updated_metadata,
                "unchanged": index.unchanged,
                "removed": index.removed,
                "skipped": len(index.skipped),
                "seconds": round(index.seconds, 3),
            },
            "seconds": round(fetch.seconds + index.seconds, 3),
        }


def sync_feed(
    feed: str | Path,
    index_dir: str | Path,
    *,
    feed_format: str = "auto",
    confirm: ConfirmRemovals | None = None,
    workers: int | None = None,
    per_host: int | None = None,
    progress: bool = False,
    download: DownloadOptions | None = None,
    **build_options: object,
) -> FeedSyncSummary:
    """Fetch `feed` (a path or an http(s) URL) into `index_dir` and index it; a re-run fetches
    only what changed and removes the products gone from the feed.

    `build_options` go to `build_index` (`embedder`, `backbone`, `recognize`,
    `allow_removals`, `max_removal_share`, ...). When the index's removal guard refuses (more
    than `max_removal_share` of the items would go), `confirm(removals, items)` is asked; without
    it, or when it says no, `RemovalGuardError` is raised and the photos set aside are put back,
    so the index and the feed folder stay as they were. Raises `FeedSyncRunningError` at once
    when another sync of this index runs, `NotOnPostgresError` for a PostgreSQL catalog (the
    feed's photos live in the index directory).

    Example:
        >>> sync_feed("https://shop.example/feed.xml", "shop-index", per_host=4,
        ...           confirm=lambda gone, items: len(gone) < 100).removed  # doctest: +SKIP
        3
    """
    if is_database_url(str(index_dir)):
        raise NotOnPostgresError(
            "a feed is synced into an index directory (its photos are kept there), not yet "
            "a PostgreSQL catalog: sync into a directory, then `stylefinder export --index DIR "
            "--to URL`"
        )
    with _sync_lock(index_dir):
        return _sync(
            feed,
            index_dir,
            feed_format=feed_format,
            confirm=confirm,
            workers=workers,
            per_host=per_host,
            progress=progress,
            download=download,
            build_options=build_options,
        )


def _sync(
    feed: str | Path,
    index_dir: str | Path,
    *,
    feed_format: str,
    confirm: ConfirmRemovals | None,
    workers: int | None,
    per_host: int | None,
    progress: bool,
    download: DownloadOptions | None,
    build_options: dict[str, object],
) -> FeedSyncSummary:
    ahead = _embed_ahead(index_dir, build_options, progress)
    with ahead or contextlib.nullcontext():
        fetched = fetch_feed(
            feed,
            index_dir,
            feed_format=feed_format,
            workers=workers,
            per_host=per_host,
            progress=progress,
            options=download,
            on_image=ahead.add if ahead is not None else None,
        )
        run = dict(build_options, metadata_csv=fetched.metadata_csv, progress=progress)
        if ahead is not None:
            try:
                run.update(embedder=ahead.embedder, prepared=ahead.finish())
            except BaseException:
                fetched.undo_removals()
                raise
    try:
        try:
            built = build_index(fetched.catalog_dir, index_dir, **run)  # type: ignore[arg-type]
        except RemovalGuardError as refused:
            if confirm is None or not confirm(refused.removals, _items(index_dir)):
                raise
            run["allow_removals"] = True
            built = build_index(fetched.catalog_dir, index_dir, **run)  # type: ignore[arg-type]
    except BaseException:
        fetched.undo_removals()
        raise
    if built.dry_run:
        fetched.undo_removals()
    else:
        fetched.commit_removals()
    return FeedSyncSummary(fetched, built)


#: The `build_index` options that choose its embedder (`embedder_for_index`).
_EMBEDDER_OPTIONS = ("backbone", "pooling", "weights", "runtime", "precision", "batch_size")


def _embed_ahead(
    index_dir: str | Path, build_options: dict[str, object], progress: bool
) -> EmbedAhead | None:
    """Embedding that overlaps the downloads, with the embedder `build_index` would use, or
    None where the build does not embed here (a dry run, a rebuild, the Ray engine)."""
    if any(build_options.get(name) for name in ("dry_run", "rebuild")):
        return None
    if build_options.get("engine", "local") != "local":
        return None
    embedder = build_options.get("embedder")
    if embedder is None:
        chosen = {name: build_options[name] for name in _EMBEDDER_OPTIONS if name in build_options}
        embedder = embedder_for_index(
            existing_store(index_dir), threads=build_options.get("threads"), **chosen
        )
    recognize = bool(build_options.get("recognize", True))
    return EmbedAhead(
        embedder,  # type: ignore[arg-type]
        recognize=recognize,
        imagenet_categories=recognize and bool(build_options.get("imagenet_categories")),
        progress=progress,
    )


@dataclass
class SyncRound:
    """One round of `sync_every`: its number (from 1), and its summary or the error that
    failed it (the feed unreachable, the removal guard refusing, ...)."""

    number: int
    summary: FeedSyncSummary | None = None
    error: Exception | None = None
    seconds: float = 0.0


def sync_every(
    feed: str | Path,
    index_dir: str | Path,
    interval_s: float,
    *,
    rounds: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_round: Callable[[SyncRound], None] | None = None,
    **sync_options: object,
) -> int:
    """Sync `feed` into `index_dir` (`sync_feed` with `sync_options`), then again every
    `interval_s` seconds from the start of the one before (at once when a sync took longer),
    `rounds` times or until interrupted (KeyboardInterrupt goes through, between rounds or
    inside one, whose removals are then put back). A round that fails with a stylefinder
    error or an `OSError` is handed to `on_round` like the others, and the loop goes on; a
    bug stops it. Returns how many rounds ran.

    Example:
        >>> sync_every("https://shop.example/feed.xml", "shop-index", 6 * 3600,
        ...            on_round=lambda r: print(r.number, r.error or r.summary.downloaded))
        ... # doctest: +SKIP
        1 118
    """
    if not interval_s > 0:
        raise ValueError(f"the interval between syncs must be positive, got {interval_s!r} s")
    done = 0
    while rounds is None or done < rounds:
        started = clock()
        outcome = SyncRound(done + 1)
        try:
            outcome.summary = sync_feed(feed, index_dir, **sync_options)  # type: ignore[arg-type]
        except (StylefinderError, OSError) as exc:
            log.warning("feed sync round %d of %s failed: %s", outcome.number, feed, exc)
            outcome.error = exc
        outcome.seconds = clock() - started
        done += 1
        if on_round is not None:
            on_round(outcome)
        if rounds is not None and done >= rounds:
            break
        sleep(max(0.0, interval_s - (clock() - started)))
    return done


@contextlib.contextmanager
def _sync_lock(index_dir: str | Path) -> Iterator[None]:
    """Hold the index's feed sync lock (an exclusive `flock`, so it is seen across threads and
    processes), or raise `FeedSyncRunningError` at once."""
    folder = Path(index_dir) / FEED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / SYNC_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FeedSyncRunningError(
                f"a sync of the feed of {index_dir} is running already; try again when it finishes"
            ) from None
        yield
    finally:
        os.close(fd)  # lets the lock go


def _items(index_dir: str | Path) -> int:
    """How many items the index has now (for `confirm`)."""
    from stylefinder.index.store import IndexStore

    return len(IndexStore.open(index_dir).snapshot())
