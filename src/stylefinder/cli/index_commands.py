"""Commands that build and change an index: demo-data, index, restore and tune."""

from __future__ import annotations

import argparse
import json
import sys

from stylefinder.jobs.build import DEFAULT_MAX_REMOVAL_SHARE


def demo_data(args: argparse.Namespace) -> int:
    """`stylefinder demo-data DIR`: write the labeled demo catalog."""
    from stylefinder.catalog.demo import write_demo_catalog

    demo = write_demo_catalog(args.directory, full=args.full, queries_dir=args.queries)
    print(f"wrote {demo.count} images and {demo.csv_path}")
    if demo.queries:
        print(f"wrote {len(demo.queries)} held-out query photos to {args.queries}")
    return 0


def index(args: argparse.Namespace) -> int:
    """`stylefinder index CATALOG --index DIR`: embed new and changed photos; asks before
    removing many items."""
    from stylefinder.errors import RemovalGuardError

    try:
        return _run_index(args, allow_removals=args.allow_removals)
    except RemovalGuardError as exc:
        print(f"stylefinder: {exc}", file=sys.stderr)
        if not _ask(f"Remove these {len(exc.removals)} items?"):
            print("stylefinder: nothing was written", file=sys.stderr)
            return 1
    return _run_index(args, allow_removals=True)


def _run_index(args: argparse.Namespace, *, allow_removals: bool) -> int:
    from stylefinder.jobs.build import build_index

    summary = build_index(
        args.catalog,
        args.index,
        dry_run=args.dry_run,
        allow_removals=allow_removals,
        max_removal_share=args.max_removals,
        rebuild=args.rebuild,
        ann=args.ann,
        metadata_csv=args.meta,
        backbone=args.backbone,
        pooling=args.pooling,
        weights=args.weights,
        runtime=args.runtime,
        precision=args.precision,
        batch_size=args.batch_size or 64,
        threads=args.threads,
        checkpoint_seconds=args.checkpoint_seconds,
        progress=not args.no_progress and not args.json,
        recognize=not args.no_recognize,
        imagenet_categories=args.imagenet_categories,
        engine=args.engine,
        ray_address=args.address,
        ray_workers=args.workers,
        ray_batch_size=args.batch_size,
    )
    if args.json:
        payload = dict(summary.__dict__, images_per_second=summary.images_per_second)
        print(json.dumps(payload, indent=2, default=list))
        return 0
    if summary.dry_run:
        _print_plan(summary, args.index)
        return 0
    print(
        f"indexed {summary.total} items in {args.index}: {summary.embedded} embedded "
        f"({summary.embedded - summary.changed} new, {summary.changed} changed, "
        f"{summary.images_per_second:.1f} images/s), {summary.reused} reused by content, "
        f"{summary.updated_metadata} metadata updates, {summary.unchanged} unchanged, "
        f"{summary.removed} removed ({summary.seconds:.1f} s)"
    )
    if summary.skipped:
        print(f"skipped {len(summary.skipped)} files:")
        for path, reason in summary.skipped:
            print(f"  {path}: {reason}")
    if summary.metadata_problems:
        print(f"metadata problems ({len(summary.metadata_problems)}):")
        for problem in summary.metadata_problems:
            print(f"  {problem}")
    if summary.metadata_rows_without_image:
        print(f"{summary.metadata_rows_without_image} metadata rows matched no image")
    if summary.recognized:
        columns = "'colours', 'category_pred'" if args.imagenet_categories else "'colours'"
        print(f"recognized {summary.recognized} items (metadata columns {columns})")
    for item_id, reason in summary.recognition_failed[:20]:
        print(f"  could not recognize {item_id}: {reason}")
    return 0


def _print_plan(summary, index_dir: str) -> None:
    print(
        f"dry run, nothing written to {index_dir}: {summary.scanned} images found; would embed "
        f"{summary.embedded} ({summary.embedded - summary.changed} new, {summary.changed} "
        f"changed), reuse {summary.reused} by content, update metadata of "
        f"{summary.updated_metadata}, keep {summary.unchanged} unchanged and remove "
        f"{summary.removed}; {summary.total} items after"
    )
    for item_id in summary.removed_ids[:50]:
        print(f"  would remove {item_id}")
    if summary.removed > 50:
        print(f"  ... and {summary.removed - 50} more (--json lists them all)")
    for path, reason in summary.skipped:
        print(f"  would skip {path}: {reason}")


def restore(args: argparse.Namespace) -> int:
    """`stylefinder restore --index DIR`: bring back the generation before the last run."""
    from stylefinder.jobs.build import restore_index

    def confirm(point, current: int) -> bool:
        print(
            f"restore generation {point.generation} ({point.items} items, saved "
            f"{point.saved_at}) in place of the current {current} items"
        )
        removes = current - point.items
        if args.yes or removes <= DEFAULT_MAX_REMOVAL_SHARE * max(current, 1):
            return True
        return _ask(f"That leaves {removes} fewer items. Restore?")

    done = restore_index(args.index, confirm=confirm)
    print(
        f"restored generation {done.restored_generation} as generation {done.generation}: "
        f"{done.items_after} items (were {done.items_before}); `stylefinder restore --index "
        f"{args.index}` again undoes this"
    )
    return 0


def export(args: argparse.Namespace) -> int:
    """`stylefinder export --index SRC --to DEST`: copy a catalog, directory <-> PostgreSQL."""
    from stylefinder.jobs.export import export_catalog

    summary = export_catalog(args.index, args.to)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return 0
    print(
        f"copied {summary.items} items and {summary.events} events of {summary.shoppers} "
        f"shoppers from {summary.source} to {summary.destination}"
    )
    if summary.events_of_missing_items:
        print(f"  left out {summary.events_of_missing_items} events of items no longer there")
    if summary.tokens_not_copied:
        print(f"  {summary.tokens_not_copied} shoppers' tokens stay behind: issue new ones")
    for note in summary.notes:
        print(f"  note: {note}")
    return 0


def tune(args: argparse.Namespace) -> int:
    """`stylefinder tune --index DIR --label-column C` (or `--reset`): learn a projection."""
    from stylefinder.jobs.tune import reset_projection, tune_index

    if args.reset:
        removed = reset_projection(args.index)
        print("projection removed" if removed else "the index had no projection")
        return 0
    if not args.label_column:
        raise ValueError("--label-column is required (or --reset)")
    projection = tune_index(
        args.index,
        label_column=args.label_column,
        train_index=args.train_index,
        method=args.method,
        dim=args.dim,
        epochs=args.epochs,
        progress=True,
    )
    info = projection.info
    print(
        f"learned a {info['dim']}-d {info['method']} projection from {info['items']:,} items "
        f"with {info['labels']} labels ({args.label_column!r}); queries on {args.index} use it now"
    )
    if projection.classifier is not None:
        _annotate(args.index)
    if "calibration_accuracy" in info:
        print(
            f"classifier accuracy on {info['calibration_items']:,} held-out training items: "
            f"{info['calibration_accuracy']:.3f} (temperature {info['temperature']})"
        )
    return 0


def _annotate(index_dir: str) -> None:
    from stylefinder.jobs.annotate import annotate_index

    done = annotate_index(index_dir)
    source = f", category_pred from the {done.source}" if done.source else ""
    print(f"recognized colours of {done.colours} new items{source}")


def _ask(question: str) -> bool:
    """Ask a yes/no question on the terminal; False without one (scripts, CI)."""
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")
