"""The feed stage of indexing: read a product feed, bring its images into a folder inside the
index directory, and write the metadata CSV that goes with them, so that the usual folder
indexing (`stylefinder.jobs.build.build_index`) takes it from there.

Layout, inside the index directory:
    feed/images/<product>/<position>.<ext>   one file per product photo (stable names, so an
                                             unchanged photo keeps its item id and file)
    feed/metadata.csv                        id, path, product_id, image_position, title, ...
    feed/state.json                          validators, hashes and failures (`state`)

Each photo is an item with id "<product id>#<position>" (1 is the main photo) and the product's
fields as metadata, `product_id` among them, so that results can be grouped by product. A
re-sync fetches every URL again with `If-None-Match` / `If-Modified-Since`; a 304, or a body
whose hash is unchanged, leaves the file untouched (the index does not even re-read it).

Photos of products gone from the feed, and photos whose URL now answers 404 or 410, are set
aside (in `feed/removing/`) rather than deleted: the caller commits the removals once the
index accepted them (`FeedFetch.commit_removals`), or puts them back (`undo_removals`) when the
index's removal guard refused. A photo that failed for another reason (a timeout, a 5xx) keeps
the copy downloaded before; every failed URL is fetched again on the next run.

Example:
    >>> fetched = fetch_feed("https://shop.example/feed.xml", "shop-index")  # doctest: +SKIP
    >>> fetched.downloaded, fetched.not_modified, fetched.failure_counts  # doctest: +SKIP
    (118, 0, {'http 404': 2})
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from stylefinder.catalog.feeds.download import (
    GONE_STATUSES,
    Downloader,
    DownloadOptions,
    Fetched,
    Validators,
)
from stylefinder.catalog.feeds.formats import FeedFormatError, FeedReading, read_feed
from stylefinder.catalog.feeds.product import Product, is_web_url
from stylefinder.catalog.feeds.state import (
    FailureRecord,
    FeedState,
    ImageRecord,
    load_state,
    save_state,
    write_atomic,
)

FEED_DIR = "feed"
IMAGES_DIR = "images"
REMOVING_DIR = "removing"
STATE_FILE = "state.json"
METADATA_FILE = "metadata.csv"
#: The metadata CSV's columns; `id` and `path` match rows to files (`catalog.metadata`).
METADATA_COLUMNS = (
    "id",
    "path",
    "product_id",
    "image_position",
    "title",
    "price",
    "currency",
    "link",
    "availability",
    "brand",
    "colour",
    "category",
    "tags",
    "description",
    "image_url",
)
#: The largest feed downloaded (a feed is not an image: it may be large).
MAX_FEED_BYTES = 1 << 30
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class FeedFetch:
    """What `fetch_feed` did. Counts are per image URL: `downloaded` (a body with new
    content), `not_modified` (304), `unchanged` (a body with the same content as kept),
    `kept` (failed this time; the copy from before stays), `failed` ((url, detail) by reason).
    `retried` URLs had failed on the run before, `recovered` of them now came. `removals` are
    the item ids set aside, until `commit_removals` or `undo_removals`."""

    feed: str
    format: str
    syntax: str
    catalog_dir: Path
    metadata_csv: Path
    products: int = 0
    images: int = 0
    downloaded: int = 0
    not_modified: int = 0
    unchanged: int = 0
    kept: int = 0
    failed: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    retried: int = 0
    recovered: int = 0
    removals: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0
    download_seconds: float = 0.0
    seconds: float = 0.0
    _staged: list[tuple[str, Path, Path]] = field(default_factory=list, repr=False)
    _state: FeedState | None = field(default=None, repr=False)
    _state_path: Path | None = field(default=None, repr=False)

    @property
    def failure_counts(self) -> dict[str, int]:
        """How many URLs failed, by reason."""
        return {reason: len(urls) for reason, urls in sorted(self.failed.items())}

    def commit_removals(self) -> int:
        """Delete the files set aside and forget them; returns how many. Call it once the
        index no longer has their items.

        Example:
            >>> fetched.commit_removals()  # doctest: +SKIP
            3
        """
        for item_id, aside, _ in self._staged:
            aside.unlink(missing_ok=True)
            if self._state is not None:
                self._state.images.pop(item_id, None)
        count = len(self._staged)
        self._staged = []
        removing = self.catalog_dir.parent / REMOVING_DIR
        if not count and not removing.exists():
            return 0  # nothing set aside: the state and the folders are as the fetch left them
        if self._state is not None and self._state_path is not None:
            save_state(self._state_path, self._state)
        shutil.rmtree(removing, ignore_errors=True)
        _remove_empty_folders(self.catalog_dir)
        return count

    def undo_removals(self) -> int:
        """Put the files set aside back (the index refused to remove their items); returns
        how many.

        Example:
            >>> fetched.undo_removals()  # doctest: +SKIP
            3
        """
        for _, aside, original in self._staged:
            original.parent.mkdir(parents=True, exist_ok=True)
            os.replace(aside, original)
        count = len(self._staged)
        self._staged = []
        shutil.rmtree(self.catalog_dir.parent / REMOVING_DIR, ignore_errors=True)
        return count


@dataclass(frozen=True)
class _Slot:
    """One product photo the feed lists."""

    item_id: str
    product: Product
    position: int
    url: str
    folder: str


def fetch_feed(
    feed: str | Path,
    index_dir: str | Path,
    *,
    feed_format: str = "auto",
    workers: int | None = None,
    per_host: int | None = None,
    progress: bool | Callable[[Fetched], None] = False,
    options: DownloadOptions | None = None,
    on_image: Callable[[str, Path], None] | None = None,
) -> FeedFetch:
    """Read `feed` (a path or an http(s) URL) and bring its images into `index_dir`'s feed
    folder (see the module docstring); never fails for a bad row or image, which are listed.
    `workers` threads download, at most `per_host` at once from one host; `progress` shows a
    bar (or is called with each outcome). `on_image(sha256, path)` is called, on the download
    threads, for each file written with new content, as soon as it is there (so that it can be
    embedded while the others download). Raises `FeedFormatError` for a feed that cannot be
    read at all (nothing is changed then).

    Example:
        >>> fetched = fetch_feed("products_export.csv", "shop-index")  # doctest: +SKIP
        >>> fetched.catalog_dir, fetched.removals  # doctest: +SKIP
        (PosixPath('shop-index/feed/images'), ['old-tee#1'])
    """
    started = time.perf_counter()
    options = options or DownloadOptions()
    options = dataclasses.replace(
        options, workers=workers or options.workers, per_host=per_host or options.per_host
    )
    feed_dir = Path(index_dir) / FEED_DIR
    images_dir = feed_dir / IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    _restore_leftovers(feed_dir)
    state_path = feed_dir / STATE_FILE
    state = load_state(state_path)
    with Downloader(options) as downloader:
        reading = _read(feed, feed_format, downloader)
        result = FeedFetch(
            feed=str(feed),
            format=reading.format,
            syntax=reading.syntax,
            catalog_dir=images_dir,
            metadata_csv=feed_dir / METADATA_FILE,
            products=len(reading.products),
            problems=reading.problems + ([state.note] if state.note else []),
            _state=state,
            _state_path=state_path,
        )
        slots = _slots(reading.products)
        result.images = len(slots)
        by_url: dict[str, list[_Slot]] = {}
        for slot in slots.values():
            by_url.setdefault(slot.url, []).append(slot)
        sources = _sources(state, images_dir, by_url)
        requests = []
        for url in by_url:
            source = sources.get(url)
            validators = Validators(source[0].etag, source[0].last_modified) if source else None
            requests.append((url, validators))
        result.retried = sum(url in state.failures for url in by_url)
        bar = _progress_bar(len(requests), progress)
        lock = threading.Lock()

        def apply(fetched: Fetched) -> None:  # on the download threads: one URL's own files
            written = _apply(
                fetched, by_url[fetched.url], sources.get(fetched.url), state, result, lock
            )
            if on_image is not None and written is not None and fetched.sha256:
                on_image(fetched.sha256, written)

        download_started = time.perf_counter()
        try:
            for fetched in downloader.fetch_all(requests, then=apply):
                if callable(progress):
                    progress(fetched)
                elif bar is not None:
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
        result.download_seconds = time.perf_counter() - download_started
    gone = [item_id for item_id in state.images if item_id not in slots]
    for item_id in gone:
        _stage(item_id, state, images_dir, feed_dir, result)
    state.feed, state.synced_at = str(feed), _now()
    save_state(state_path, state)
    _write_metadata(result.metadata_csv, slots, state, images_dir)
    result.seconds = time.perf_counter() - started
    return result


def product_folder(product_id: str) -> str:
    """The folder name of a product's photos: its id when that is a safe file name, else a
    cleaned id plus a short hash of the real one (so that two ids never share a folder).

    Example:
        >>> product_folder("sku-1"), product_folder("Shirt / Blue")
        ('sku-1', 'Shirt-Blue-64f345a4')
    """
    clean = _UNSAFE.sub("-", product_id).strip("-.")[:80]
    if clean == product_id and clean.lower() not in _RESERVED:
        return clean
    return f"{clean or 'product'}-{hashlib.sha256(product_id.encode()).hexdigest()[:8]}"


_RESERVED = frozenset({"con", "prn", "aux", "nul", REMOVING_DIR})


def item_id_of(product_id: str, position: int) -> str:
    """The item id of a product's photo (positions from 1, the main photo).

    Example:
        >>> item_id_of("sku-1", 2)
        'sku-1#2'
    """
    return f"{product_id}#{position}"


def _read(feed: str | Path, feed_format: str, downloader: Downloader) -> FeedReading:
    if isinstance(feed, str) and is_web_url(feed):
        fetched = downloader.fetch(feed, check_image=False, max_bytes=MAX_FEED_BYTES)
        if fetched.status != "downloaded" or fetched.data is None:
            raise FeedFormatError(
                f"cannot download the feed {feed}: {fetched.reason} ({fetched.detail}); "
                "nothing was changed"
            )
        name = PurePosixPath(feed.split("?", 1)[0]).name or "feed"
        return read_feed(fetched.data, feed_format=feed_format, name=name)
    return read_feed(feed, feed_format=feed_format)


def _slots(products: list[Product]) -> dict[str, _Slot]:
    slots: dict[str, _Slot] = {}
    for product in products:
        folder = product_folder(product.id)
        for position, url in enumerate(product.images, start=1):
            item_id = item_id_of(product.id, position)
            slots[item_id] = _Slot(item_id, product, position, url, folder)
    return slots


def _present(images_dir: Path, record: ImageRecord) -> bool:
    """Whether a kept image's file is there, with the size it was written with."""
    try:
        return (images_dir / record.file).stat().st_size == record.size
    except OSError:
        return False


def _sources(
    state: FeedState, images_dir: Path, by_url: dict[str, list[_Slot]]
) -> dict[str, tuple[ImageRecord, bytes | None]]:
    """For each URL with a good copy kept: that copy's record (its validators for the
    conditional GET) and, when a photo of that URL is not in its own file yet (photos
    reordered, a URL shared by a new product), the copy's bytes, read now, before any file is
    written."""
    sources: dict[str, tuple[ImageRecord, bytes | None]] = {}
    for record in state.images.values():
        if record.url in by_url and record.url not in sources and _present(images_dir, record):
            sources[record.url] = (record, None)
    for url, (record, _) in list(sources.items()):
        if not all(_holds(state, slot, images_dir) for slot in by_url[url]):
            sources[url] = (record, (images_dir / record.file).read_bytes())
    return sources


def _holds(state: FeedState, slot: _Slot, images_dir: Path) -> bool:
    """Whether `slot`'s file is a good copy of its URL already."""
    record = state.images.get(slot.item_id)
    return record is not None and record.url == slot.url and _present(images_dir, record)


def _apply(
    fetched: Fetched,
    slots: list[_Slot],
    source: tuple[ImageRecord, bytes | None] | None,
    state: FeedState,
    result: FeedFetch,
    lock: threading.Lock,
) -> Path | None:
    """Bring the photos of one URL's `slots` up to date with what `fetched` says; returns the
    first file written with the new body (None when none was). Runs on the download threads:
    each touches only its URL's photos (their records and files); shared counters and lists
    change under `lock`."""
    images_dir = result.catalog_dir
    feed_dir = images_dir.parent
    url = fetched.url
    if fetched.status == "not_modified" and source is None:  # a 304 to an unconditional GET
        fetched = Fetched(
            url, "failed", reason="http 304", detail="304 to a plain GET", http_status=304
        )
    if fetched.status == "failed":
        gone = fetched.http_status in GONE_STATUSES
        with lock:
            reason = fetched.reason or "unknown"
            result.failed.setdefault(reason, []).append((url, fetched.detail))
            now = _now()
            old = state.failures.get(url)
            runs = old.runs + 1 if old else 1
            first = old.first_failed_at if old else now
            state.failures[url] = FailureRecord(reason, fetched.detail, first, now, runs)
            for slot in slots:
                if slot.item_id not in state.images:
                    continue
                if gone or not _holds(state, slot, images_dir):
                    _stage(slot.item_id, state, images_dir, feed_dir, result)
                else:
                    result.kept += 1
        return None
    with lock:
        if state.failures.pop(url, None) is not None:
            result.recovered += 1
    if fetched.status == "not_modified" and source is not None:
        record_of_source, data = source
        extension = PurePosixPath(record_of_source.file).suffix.lstrip(".")
        etag = fetched.etag or record_of_source.etag
        last_modified = fetched.last_modified or record_of_source.last_modified
        for slot in slots:
            record = state.images.get(slot.item_id)
            if data is None or (record is not None and _holds(state, slot, images_dir)):
                if record is not None:
                    record.etag, record.last_modified = etag, last_modified
                continue
            _put(
                slot,
                data,
                extension,
                record_of_source.sha256,
                etag,
                last_modified,
                state,
                images_dir,
            )
        with lock:
            result.not_modified += 1
        return None
    data = fetched.data or b""
    written: Path | None = None
    for slot in slots:
        record = state.images.get(slot.item_id)
        target = f"{slot.folder}/{slot.position}.{fetched.extension}"
        if (
            record is not None
            and record.sha256 == fetched.sha256
            and record.file == target
            and _present(images_dir, record)
        ):
            record.url, record.etag, record.last_modified = url, fetched.etag, fetched.last_modified
            continue
        path = _put(
            slot,
            data,
            fetched.extension or "img",
            fetched.sha256 or "",
            fetched.etag,
            fetched.last_modified,
            state,
            images_dir,
        )
        written = written or path
    with lock:
        result.bytes_downloaded += len(data)
        if written is not None:
            result.downloaded += 1
        else:
            result.unchanged += 1
    return written


def _put(
    slot: _Slot,
    data: bytes,
    extension: str,
    sha256: str,
    etag: str | None,
    last_modified: str | None,
    state: FeedState,
    images_dir: Path,
) -> Path:
    """Write one photo's file and record it (removing its old file under another name);
    returns the file."""
    relative = f"{slot.folder}/{slot.position}.{extension}"
    path = images_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, durable=False)
    old = state.images.get(slot.item_id)
    if old is not None and old.file != relative:
        (images_dir / old.file).unlink(missing_ok=True)
    state.images[slot.item_id] = ImageRecord(
        product_id=slot.product.id,
        position=slot.position,
        url=slot.url,
        file=relative,
        sha256=sha256,
        etag=etag,
        last_modified=last_modified,
        size=len(data),
        fetched_at=_now(),
    )
    return path


def _stage(item_id: str, state: FeedState, images_dir: Path, feed_dir: Path, result: FeedFetch):
    """Set a photo's file aside for removal (its record stays until the removal commits)."""
    record = state.images.get(item_id)
    if record is None or item_id in result.removals:
        return
    original = images_dir / record.file
    aside = feed_dir / REMOVING_DIR / record.file
    if original.exists():
        aside.parent.mkdir(parents=True, exist_ok=True)
        os.replace(original, aside)
    result.removals.append(item_id)
    result._staged.append((item_id, aside, original))


def _restore_leftovers(feed_dir: Path) -> None:
    """Put back files a killed run had set aside: whether their removal is wanted is decided
    again by this run."""
    removing = feed_dir / REMOVING_DIR
    if not removing.is_dir():
        return
    for path in sorted(removing.rglob("*")):
        if path.is_file():
            target = feed_dir / IMAGES_DIR / path.relative_to(removing)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.replace(path, target)
    shutil.rmtree(removing, ignore_errors=True)


def _write_metadata(path: Path, slots: dict[str, _Slot], state: FeedState, images_dir: Path):
    """The metadata CSV of every photo that has a file, in feed order."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(METADATA_COLUMNS)
    for item_id, slot in slots.items():
        record = state.images.get(item_id)
        if record is None or not (images_dir / record.file).is_file():
            continue
        product = slot.product
        writer.writerow(
            [
                item_id,
                record.file,
                product.id,
                slot.position,
                product.title,
                product.price,
                product.currency,
                product.link,
                product.availability,
                product.brand,
                product.colour,
                product.category,
                ", ".join(product.tags),
                product.description,
                slot.url,
            ]
        )
    write_atomic(path, out.getvalue().encode("utf-8"))


def _remove_empty_folders(images_dir: Path) -> None:
    for folder in sorted(images_dir.iterdir()):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _progress_bar(total: int, enabled: bool | Callable[[Fetched], None]):
    if enabled is not True or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="downloading", dynamic_ncols=True)
