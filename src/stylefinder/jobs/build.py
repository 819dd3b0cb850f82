"""The indexing pipeline: scan a catalog folder -> embed new or changed images -> commit.

Re-running is incremental: a file whose size and modification time are unchanged is not even
re-read; a file whose content hash is already in the index (moved, renamed, duplicated) reuses
its vector; only new content is embedded. Files gone from the folder leave the index, but a run
that would remove more than a fifth of it stops before writing (a wrong or empty folder), and
the generation before each run can be restored. Bad files are skipped and listed in the
summary. Work is committed every `checkpoint_seconds`, so a killed
run keeps what it finished and the next run resumes from there.

Example:
    >>> summary = build_index("photos", "index", metadata_csv="shop.csv")  # doctest: +SKIP
    >>> summary.embedded, summary.skipped  # doctest: +SKIP
    (1000, [])
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np

from stylefinder.catalog.metadata import CatalogEntry, match_files, read_metadata_csv
from stylefinder.catalog.remote import is_remote, remote_fingerprint
from stylefinder.catalog.scan import file_hash, scan_folder, scan_list
from stylefinder.embed.base import Embedder
from stylefinder.embed.load import load_embedder
from stylefinder.embed.onnx import OnnxEmbedder
from stylefinder.embed.registry import DEFAULT_BACKBONE
from stylefinder.errors import IndexStateError, RemovalGuardError
from stylefinder.index.header import HEADER_FILE, MANIFEST_FILE, utc_now
from stylefinder.index.snapshot import Snapshot
from stylefinder.index.store import IndexStore
from stylefinder.jobs.annotate import annotate_index
from stylefinder.jobs.targets import (
    base_of,
    existing_store,
    in_database,
    open_or_create,
    run_writer,
)
from stylefinder.recognize.recognition import (
    CATEGORY_COLUMN,
    COLOURS_COLUMN,
    RECOGNIZED_COLUMNS,
    image_colours,
)
from stylefinder.recognize.taxonomy import predict_garments
from stylefinder.types import Item


@dataclass
class IndexSummary:
    """What a `build_index` run did. `skipped` holds (path, reason) for every file left out."""

    scanned: int = 0
    embedded: int = 0
    embedded_ahead: int = 0  # of `embedded`, those written from `prepared` (embedded before)
    changed: int = 0
    reused: int = 0
    updated_metadata: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    metadata_problems: list[str] = field(default_factory=list)
    metadata_rows_without_image: int = 0
    total: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    recognized: int = 0  # items whose colours (and category) were named in this run
    recognition_failed: list[tuple[str, str]] = field(default_factory=list)  # (item id, reason)
    dry_run: bool = False  # nothing was written: the counts say what a real run would do
    removed_ids: list[str] = field(default_factory=list)  # the items the folder no longer has

    @property
    def images_per_second(self) -> float:
        """The rate of the embedding this run timed (not counting `embedded_ahead`)."""
        timed = self.embedded - self.embedded_ahead
        return timed / self.embed_seconds if self.embed_seconds > 0 else 0.0


class PreparedVector(NamedTuple):
    """An image embedded before `build_index` ran (by the embedder it is given): its vector,
    and the colours and category recognition named (None when it did not)."""

    vector: np.ndarray
    colours: str | None = None
    category: str | None = None


ProgressFactory = Callable[[int], object]
DEFAULT_MAX_REMOVAL_SHARE = 0.2  # a run removing more of the catalog than this stops first
ENGINES = ("local", "ray")  # where images are decoded and embedded


def build_index(
    catalog_dir: str | Path,
    index_dir: str | Path,
    *,
    metadata_csv: str | Path | None = None,
    backbone: str = DEFAULT_BACKBONE,
    pooling: str | None = None,
    weights: str | None = None,
    runtime: str = "onnx",
    precision: str | None = None,
    batch_size: int = 64,
    threads: int | None = None,
    checkpoint_seconds: float = 30.0,
    progress: bool = False,
    embedder: Embedder | None = None,
    recognize: bool = True,
    imagenet_categories: bool = False,
    dry_run: bool = False,
    allow_removals: bool = False,
    max_removal_share: float = DEFAULT_MAX_REMOVAL_SHARE,
    rebuild: bool = False,
    ann: str | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    ray_workers: int | None = None,
    ray_batch_size: int | None = None,
    ray_keep_workers: bool = False,
    prepared: Mapping[str, PreparedVector] | None = None,
) -> IndexSummary:
    """Index the images under `catalog_dir` into `index_dir` (created or updated in place).

    `threads` (default: $STYLEFINDER_THREADS, else every core) sets how many images are decoded
    and embedded at once. With `recognize`, items get `colours` metadata, named from the image
    decoded for embedding, and then `category_pred` from a tuned classifier, or from the ImageNet
    head when `imagenet_categories` (read from the same model run as the vector); values the
    metadata CSV gives are kept. See `annotate_index`, which also names what is still unnamed.

    A run that would remove more than `max_removal_share` of the folder's items (a wrong or
    empty folder) raises `RemovalGuardError` before writing anything, unless `allow_removals`.
    `dry_run` counts what would change and writes nothing. The generation before the run stays
    restorable (`restore_index`). `rebuild` sets a damaged index's files aside (in a
    `replaced-<time>/` folder inside the index) and builds it anew. `ann` ("auto", "exact",
    "hnsw"; default: what the index was last built with) chooses how searches find candidates;
    a graph is built, or grown, when the run commits (see `stylefinder.index.vector_index`).
    `engine="ray"` decodes and embeds on a Ray cluster (`ray_address`: None starts a local one,
    "auto" joins the running one; `ray_workers` actors, default one per CPU, sent
    `ray_batch_size` images at a time; `ray_keep_workers` keeps them for the next run in this
    process), everything else staying here (see `stylefinder.jobs.ray_engine`). `prepared`
    holds images embedded already by `embedder`, by content hash (`PreparedVector`: what a
    feed sync embeds while it downloads); those are written as they are.

    Example:
        >>> build_index("photos", "index", dry_run=True).removed_ids  # doctest: +SKIP
        ['sku-1', 'sku-2']
    """
    started = time.perf_counter()
    summary = IndexSummary(dry_run=dry_run)
    listed: list[str] = []
    if Path(catalog_dir).is_file():  # a list of image paths under the list's folder
        root, files, listed = scan_list(catalog_dir)
    else:
        root = Path(catalog_dir).resolve()
        files = scan_folder(root, skip=[] if in_database(index_dir) else [Path(index_dir)])
    summary.scanned = len(files)
    table = read_metadata_csv(metadata_csv, root) if metadata_csv else None
    entries, problems, summary.metadata_rows_without_image = match_files(files, table)
    summary.metadata_problems = listed + (table.problems if table else []) + problems
    wanted = {entry.item_id for entry in entries}

    if rebuild and not dry_run:
        if in_database(index_dir):
            raise IndexStateError(
                "--rebuild rebuilds index directories; a PostgreSQL catalog "
                "is rebuilt into a new schema (?schema=NAME)"
            )
        header = _readable_header(index_dir)
        if header is not None and backbone == DEFAULT_BACKBONE and pooling is None:
            backbone, pooling = header.backbone, header.pooling
        set_aside_index(index_dir)
    existing = existing_store(index_dir)
    base = base_of(existing)
    if dry_run:
        _plan(entries, base, wanted, summary)
        summary.seconds = time.perf_counter() - started
        return summary
    if base is not None:  # before the model loads: a wrong folder is refused at once
        _check_removals(base, wanted, root, allow_removals, max_removal_share)

    if embedder is None:
        embedder = embedder_for_index(
            existing,
            backbone=backbone,
            pooling=pooling,
            weights=weights,
            runtime=runtime,
            precision=precision,
            batch_size=batch_size,
            threads=threads,
        )
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    stream = embedder
    if engine == "ray":
        from stylefinder.jobs.ray_engine import DEFAULT_RAY_BATCH, RayStream

        stream = RayStream(
            embedder,
            address=ray_address,
            workers=ray_workers,
            batch_size=ray_batch_size or DEFAULT_RAY_BATCH,
            keep_workers=ray_keep_workers,
        )
    store = open_or_create(index_dir, embedder.space)
    writer = run_writer(store, base=base, ann=ann, progress=progress)
    with writer:  # reuses base's items
        _check_removals(writer.base, wanted, root, allow_removals, max_removal_share)
        # items added through the API are not the folder's to remove
        current = _catalog_items(writer.base)
        by_hash = {item.hash: item.id for item in writer.base.items}
        if writer.base.catalog_root != str(root):
            writer.set_state("catalog_root", str(root))
        for item_id in sorted(current.keys() - wanted):
            writer.remove(item_id)
            summary.removed += 1
            summary.removed_ids.append(item_id)

        to_embed: dict[str, tuple[CatalogEntry, str]] = {}
        for entry in entries:
            old = current.get(entry.item_id)
            kind, item, digest = _classify(entry, old, by_hash, summary)
            if kind == "unreadable":
                if old is not None:
                    writer.remove(entry.item_id)
            elif kind in ("moved", "metadata"):
                writer.put(item, None)
            elif kind == "reused":
                writer.put(item, writer.base.vector_of(by_hash[digest]))
            elif kind == "embed":
                to_embed[entry.item_id] = (entry, digest)

        if prepared is not None:  # embedded while the files came (a feed's downloads)
            for key in [key for key, (_, digest) in to_embed.items() if digest in prepared]:
                entry, digest = to_embed.pop(key)
                done = prepared[digest]
                found = {COLOURS_COLUMN: done.colours, CATEGORY_COLUMN: done.category}
                _put_embedded(writer, entry, digest, current.get(key), done.vector, found, summary)
                summary.embedded_ahead += 1
        bar = _progress_bar(len(to_embed), progress)
        last_commit = time.monotonic()
        embed_started = time.perf_counter()
        sources = ((item_id, entry.file.abspath) for item_id, (entry, _) in to_embed.items())
        annotate = image_colours if recognize else None  # named while the image is decoded
        for batch in stream.embed_stream(sources, annotate=annotate):
            categories = None
            if recognize and imagenet_categories and batch.probabilities is not None:
                categories = predict_garments(batch.probabilities)
            for n, (key, vector) in enumerate(zip(batch.keys, batch.vectors, strict=True)):
                entry, digest = to_embed[key]
                found = {COLOURS_COLUMN: batch.notes[n]}
                if categories is not None:
                    found[CATEGORY_COLUMN] = categories[n][0][0]
                _put_embedded(writer, entry, digest, current.get(key), vector, found, summary)
            for key, error in batch.failures:
                summary.skipped.append((to_embed[key][0].file.relpath, error.reason))
                if key in current:  # its content changed into something unreadable
                    writer.remove(key)
            if bar is not None:
                bar.update(len(batch.keys) + len(batch.failures))
            if time.monotonic() - last_commit >= checkpoint_seconds:
                writer.commit()
                last_commit = time.monotonic()
        summary.embed_seconds = time.perf_counter() - embed_started
        if bar is not None:
            bar.close()
        writer.commit()
        summary.total = len(writer.base)
    if in_database(index_dir):  # colours were named while embedding; nothing is tuned there
        summary.seconds = time.perf_counter() - started
        return summary
    if recognize and summary.total:
        recognized = annotate_index(index_dir, imagenet=imagenet_categories, progress=progress)
        summary.recognized += recognized.colours
        summary.recognition_failed = recognized.failed
    if summary.total:
        update_tuned_space(index_dir)
    summary.seconds = time.perf_counter() - started
    return summary


def embedder_for_index(
    existing: object,
    *,
    backbone: str = DEFAULT_BACKBONE,
    pooling: str | None = None,
    weights: str | None = None,
    runtime: str = "onnx",
    precision: str | None = None,
    batch_size: int = 64,
    threads: int | None = None,
) -> Embedder:
    """The embedder a `build_index` run with these options uses on the catalog `existing`
    (a store, or None for a new index): the index's own backbone, pooling and precision
    unless others are named; on ONNX, the graph exported for these weights before (no torch).

    Example:
        >>> embedder_for_index(existing_store("shop-index")).space.backbone  # doctest: +SKIP
        'efficientnet-lite0'
    """
    if existing is not None:  # keep the index's own backbone unless told otherwise
        header = existing.header  # type: ignore[attr-defined]
        if backbone == DEFAULT_BACKBONE and pooling is None:
            backbone, pooling = header.backbone, header.pooling
        precision = precision or header.precision
    if runtime == "onnx":
        exported = OnnxEmbedder.for_weights(
            backbone,
            pooling=pooling,
            weights=weights,
            precision=precision or "fp32",
            batch_size=batch_size,
            threads=threads,
        )
        if exported is not None:
            return exported
    return load_embedder(
        backbone,
        pooling=pooling,
        weights=weights,
        runtime=runtime,
        precision=precision or "fp32",
        batch_size=batch_size,
        threads=threads,
    )


def update_tuned_space(index_dir: str | Path) -> bool:
    """On a tuned index, write the search space of its committed generation (the projected
    matrix and its vector index), so that queries only read it; False when not tuned.

    Example:
        >>> update_tuned_space("shop-index")  # doctest: +SKIP
        True
    """
    from stylefinder.recommend.projection import Projection
    from stylefinder.recommend.tuned_space import tuned_space

    projection = Projection.load(index_dir)
    if projection is None:
        return False
    tuned_space(index_dir, IndexStore.open(index_dir).snapshot(), projection)
    return True


def _catalog_items(snapshot: Snapshot | None) -> dict[str, Item]:
    """The snapshot's items that came from the catalog folder (not added through the API)."""
    if snapshot is None:
        return {}
    return {item.id: item for item in snapshot.items if item.source == "catalog"}


def _classify(
    entry: CatalogEntry, old: Item | None, by_hash: dict[str, str], summary: IndexSummary
) -> tuple[str, Item | None, str | None]:
    """What a run does with `entry`: (kind, item to write, content hash), counting it in
    `summary`. Kinds: "unchanged" (nothing to write), "moved" and "metadata" (same vector,
    new manifest row), "reused" (another item's vector), "embed", "unreadable"."""
    same_file = old is not None and (old.path, old.size, old.mtime_ns) == (
        entry.file.relpath,
        entry.file.size,
        entry.file.mtime_ns,
    )
    try:
        digest = old.hash if same_file else _content_hash(entry.file)
    except OSError as exc:
        summary.skipped.append((entry.file.relpath, f"cannot read file ({exc})"))
        return "unreadable", None, None
    item = _item(entry, digest, old)
    if old is not None and old.hash == digest:
        if old.metadata == item.metadata:
            summary.unchanged += 1
            if same_file:
                return "unchanged", None, digest
            return "moved", item.replace(updated_at=old.updated_at), digest  # keep timestamps
        summary.updated_metadata += 1
        return "metadata", item, digest
    if digest in by_hash:  # same bytes already embedded under another id
        summary.reused += 1
        return "reused", item, digest
    return "embed", item, digest


def _plan(
    entries: list[CatalogEntry], base: Snapshot | None, wanted: set[str], summary: IndexSummary
) -> None:
    """Fill `summary` with what a run would do, writing nothing (for `dry_run`)."""
    current = _catalog_items(base)
    by_hash = {item.hash: item.id for item in base.items} if base is not None else {}
    summary.removed_ids = sorted(current.keys() - wanted)
    summary.removed = len(summary.removed_ids)
    for entry in entries:
        kind, _, digest = _classify(entry, current.get(entry.item_id), by_hash, summary)
        if kind == "embed":
            summary.embedded += 1
            summary.changed += entry.item_id in current
            by_hash.setdefault(digest, entry.item_id)  # later copies of it would be reused
    api_items = len(base or ()) - len(current)
    summary.total = api_items + len(entries) - len(summary.skipped)  # skipped: unreadable


def _check_removals(
    base: Snapshot, wanted: set[str], root: Path, allow: bool, max_share: float
) -> None:
    """Raise `RemovalGuardError` when the run would remove more than `max_share` of the
    folder's items, unless `allow`."""
    current = _catalog_items(base)
    gone = sorted(current.keys() - wanted)
    if allow or not current or len(gone) <= max_share * len(current):
        return
    shown = ", ".join(gone[:10]) + (f" and {len(gone) - 10} more" if len(gone) > 10 else "")
    raise RemovalGuardError(
        f"this run would remove {len(gone)} of the index's {len(current)} catalog items "
        f"({len(gone) / len(current):.0%}, over the {max_share:.0%} limit): their files are "
        f"not in {root} ({len(wanted)} images found there). Nothing was written. Check the "
        f"folder; if the removals are wanted, run again with --allow-removals (or a higher "
        f"--max-removals); --dry-run lists every change. Would remove: {shown}",
        gone,
    )


@dataclass(frozen=True)
class RestoreSummary:
    """What `restore_index` did: the generation it brought back and the item counts."""

    restored_generation: int
    generation: int
    items_before: int
    items_after: int
    saved_at: str


def restore_index(index_dir: str | Path, *, confirm=None) -> RestoreSummary:
    """Bring back the generation saved before the last `index` run (or restore); a second
    restore undoes the first. `confirm(point, current_items)`, when given, is asked first and
    the restore is cancelled (`RemovalGuardError`) unless it returns True.

    Example:
        >>> restore_index("shop-index").items_after  # doctest: +SKIP
        1000
    """
    store = IndexStore.open(index_dir)
    with store.writer() as writer:
        point = store.restore_point()
        if point is None:
            writer.restore()  # raises: nothing to restore, says when one is kept
        before = len(writer.base)
        if confirm is not None and not confirm(point, before):
            raise RemovalGuardError("restore cancelled; nothing was changed")
        generation = writer.restore()
        after = len(writer.base)
    return RestoreSummary(point.generation, generation, before, after, point.saved_at)


def set_aside_index(index_dir: str | Path) -> Path | None:
    """Move an index's manifest, header, projection and tuned space into a new
    `replaced-<time>/` folder inside it, so that it can be built anew (`--rebuild`); the old
    vector files are removed by the new index's first commit. Returns that folder (None when
    there was nothing to move).

    Example:
        >>> set_aside_index("shop-index")  # doctest: +SKIP
        PosixPath('shop-index/replaced-20261201T101500')
    """
    directory = Path(index_dir)
    names = [HEADER_FILE, MANIFEST_FILE, f"{MANIFEST_FILE}-wal", f"{MANIFEST_FILE}-shm"]
    names += ["projection.npz", "tuned"]
    present = [directory / name for name in names if (directory / name).exists()]
    if not present:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    target = directory / f"replaced-{stamp}"
    target.mkdir()
    for path in present:
        os.replace(path, target / path.name)
    return target


def _readable_header(index_dir: str | Path):
    """The index's header, or None when it is missing or unreadable."""
    try:
        return IndexStore.open(index_dir).header
    except IndexStateError:
        return None


def _content_hash(file) -> str:
    """A file's content hash; for a file on object storage, a fingerprint of what its store
    says of it (`remote_fingerprint`), so that nothing is downloaded to learn it."""
    if is_remote(file.abspath):
        return remote_fingerprint(file.abspath, file.size, file.mtime_ns)
    return file_hash(file.abspath)


def _put_embedded(
    writer, entry: CatalogEntry, digest: str, old: Item | None, vector, found: dict, summary
) -> None:
    """Write a newly embedded item, with what recognition `found` (colours, category) where
    its metadata has no value of its own, and count it in `summary`."""
    item = _item(entry, digest, old)
    found = {
        column: value
        for column, value in found.items()
        if value is not None and column not in item.metadata
    }
    if found:
        item = item.replace(metadata={**item.metadata, **found})
        summary.recognized += 1
    writer.put(item, vector)
    summary.embedded += 1
    summary.changed += old is not None


def _item(entry: CatalogEntry, digest: str, old: Item | None) -> Item:
    now = utc_now()
    metadata = dict(entry.metadata)
    if old is not None and old.hash == digest:  # same image: what recognition found still holds
        for column in RECOGNIZED_COLUMNS:
            if column in old.metadata and column not in metadata:
                metadata[column] = old.metadata[column]
    return Item(
        id=entry.item_id,
        path=entry.file.relpath,
        hash=digest,
        size=entry.file.size,
        mtime_ns=entry.file.mtime_ns,
        metadata=metadata,
        added_at=old.added_at if old else now,
        updated_at=now,
    )


def _progress_bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="embedding", dynamic_ncols=True)
