"""Index a shop's product feed: fetch its images into the index directory (the catalog
stage, `stylefinder.catalog.feeds.fetch_feed`), then index that folder with its metadata CSV
(`build_index`), committing the feed's removals only once the index accepted them.

Example:
    >>> summary = sync_feed("products_export.csv", "shop-index")  # doctest: +SKIP
    >>> summary.downloaded, summary.failure_counts, summary.index.embedded  # doctest: +SKIP
    (118, {'http 404': 2}, 118)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stylefinder.catalog.feeds.download import DownloadOptions
from stylefinder.catalog.feeds.sync import FeedFetch, fetch_feed
from stylefinder.errors import RemovalGuardError
from stylefinder.jobs.build import IndexSummary, build_index

#: `confirm(removals, catalog_items)`: asked when a sync would remove more of the index than
#: its guard allows (a truncated or wrong feed); True goes ahead.
ConfirmRemovals = Callable[[list[str], int], bool]


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
    so the index and the feed folder stay as they were.

    Example:
        >>> sync_feed("https://shop.example/feed.xml", "shop-index", per_host=4,
        ...           confirm=lambda gone, items: len(gone) < 100).removed  # doctest: +SKIP
        3
    """
    fetched = fetch_feed(
        feed,
        index_dir,
        feed_format=feed_format,
        workers=workers,
        per_host=per_host,
        progress=progress,
        options=download,
    )
    run = dict(build_options, metadata_csv=fetched.metadata_csv, progress=progress)
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


def _items(index_dir: str | Path) -> int:
    """How many items the index has now (for `confirm`)."""
    from stylefinder.index.store import IndexStore

    return len(IndexStore.open(index_dir).snapshot())
