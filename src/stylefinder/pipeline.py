"""The indexing pipeline: scan a catalog folder -> embed new or changed images -> commit.

Re-running is incremental: a file whose size and modification time are unchanged is not even
re-read; a file whose content hash is already in the index (moved, renamed, duplicated) reuses
its vector; only new content is embedded. Files gone from the folder leave the index. Bad files
are skipped and listed in the summary. Work is committed every `checkpoint_seconds`, so a killed
run keeps what it finished and the next run resumes from there.

Example:
    >>> summary = build_index("photos", "index", metadata_csv="shop.csv")  # doctest: +SKIP
    >>> summary.embedded, summary.skipped  # doctest: +SKIP
    (1000, [])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stylefinder.catalog.metadata import CatalogEntry, match_files, read_metadata_csv
from stylefinder.catalog.scan import file_hash, scan_folder
from stylefinder.embed.backbones import DEFAULT_BACKBONE
from stylefinder.embed.runner import Embedder
from stylefinder.index.store import IndexStore, utc_now
from stylefinder.recognize.recognition import (
    CATEGORY_COLUMN,
    COLOURS_COLUMN,
    RECOGNIZED_COLUMNS,
    annotate_index,
    image_colours,
)
from stylefinder.recognize.taxonomy import predict_garments
from stylefinder.types import Item


@dataclass
class IndexSummary:
    """What a `build_index` run did. `skipped` holds (path, reason) for every file left out."""

    scanned: int = 0
    embedded: int = 0
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

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0


ProgressFactory = Callable[[int], object]


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
) -> IndexSummary:
    """Index the images under `catalog_dir` into `index_dir` (created or updated in place).

    `threads` (default: $STYLEFINDER_THREADS, else every core) sets how many images are decoded
    and embedded at once. With `recognize`, items get `colours` metadata, named from the image
    decoded for embedding, and then `category_pred` from a tuned classifier, or from the ImageNet
    head when `imagenet_categories` (read from the same model run as the vector); values the
    metadata CSV gives are kept. See `annotate_index`, which also names what is still unnamed.
    """
    started = time.perf_counter()
    root = Path(catalog_dir).resolve()
    summary = IndexSummary()
    files = scan_folder(root, skip=[Path(index_dir)])
    summary.scanned = len(files)
    table = read_metadata_csv(metadata_csv, root) if metadata_csv else None
    entries, problems, summary.metadata_rows_without_image = match_files(files, table)
    summary.metadata_problems = (table.problems if table else []) + problems

    if embedder is None:
        if IndexStore.exists(index_dir):  # keep the index's own backbone unless told otherwise
            header = IndexStore.open(index_dir).header
            if backbone == DEFAULT_BACKBONE and pooling is None:
                backbone, pooling = header.backbone, header.pooling
            precision = precision or header.precision
        embedder = Embedder(
            backbone,
            pooling=pooling,
            weights=weights,
            runtime=runtime,
            precision=precision or "fp32",
            batch_size=batch_size,
            threads=threads,
        )
    store = IndexStore.open_or_create(index_dir, embedder.space)

    with store.writer() as writer:
        # items added through the API are not the folder's to remove
        current = {item.id: item for item in writer.base.items if item.source == "catalog"}
        by_hash = {item.hash: item.id for item in writer.base.items}
        if writer.base.catalog_root != str(root):
            writer.set_state("catalog_root", str(root))
        wanted = {entry.item_id for entry in entries}
        for item_id in current.keys() - wanted:
            writer.remove(item_id)
            summary.removed += 1

        to_embed: dict[str, tuple[CatalogEntry, str]] = {}
        for entry in entries:
            old = current.get(entry.item_id)
            same_file = old is not None and (old.path, old.size, old.mtime_ns) == (
                entry.file.relpath,
                entry.file.size,
                entry.file.mtime_ns,
            )
            try:
                digest = old.hash if same_file else file_hash(entry.file.abspath)
            except OSError as exc:
                summary.skipped.append((entry.file.relpath, f"cannot read file ({exc})"))
                if old is not None:
                    writer.remove(entry.item_id)
                continue
            item = _item(entry, digest, old)
            if old is not None and old.hash == digest:
                if same_file and old.metadata == item.metadata:
                    summary.unchanged += 1
                    continue
                if old.metadata == item.metadata:  # moved or touched: keep its timestamps
                    item = item.replace(updated_at=old.updated_at)
                    summary.unchanged += 1
                else:
                    summary.updated_metadata += 1
                writer.put(item, None)
            elif digest in by_hash:  # same bytes already embedded under another id
                writer.put(item, writer.base.vectors[writer.base.row_of[by_hash[digest]]])
                summary.reused += 1
            else:
                to_embed[entry.item_id] = (entry, digest)

        bar = _progress_bar(len(to_embed), progress)
        last_commit = time.monotonic()
        embed_started = time.perf_counter()
        sources = ((item_id, entry.file.abspath) for item_id, (entry, _) in to_embed.items())
        annotate = image_colours if recognize else None  # named while the image is decoded
        for batch in embedder.embed_stream(sources, annotate=annotate):
            categories = None
            if recognize and imagenet_categories and batch.probabilities is not None:
                categories = predict_garments(batch.probabilities)
            for n, (key, vector) in enumerate(zip(batch.keys, batch.vectors, strict=True)):
                entry, digest = to_embed[key]
                item = _item(entry, digest, current.get(key))
                found = {COLOURS_COLUMN: batch.notes[n]}
                if categories is not None:
                    found[CATEGORY_COLUMN] = categories[n][0][0]
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
                summary.changed += key in current
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
    if recognize and summary.total:
        recognized = annotate_index(index_dir, imagenet=imagenet_categories, progress=progress)
        summary.recognized += recognized.colours
        summary.recognition_failed = recognized.failed
    summary.seconds = time.perf_counter() - started
    return summary


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
