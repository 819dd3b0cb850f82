"""Commands that build and change an index: demo-data, index, restore and tune."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

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
    removing many items. With `--feed FEED`: sync a product feed (`_index_feed`)."""
    from stylefinder.errors import RemovalGuardError

    if args.feed is not None:
        return _index_feed(args)
    if args.every is not None:
        raise ValueError("--every re-syncs a product feed: give it with --feed FEED")
    try:
        return _run_index(args, allow_removals=args.allow_removals)
    except RemovalGuardError as exc:
        print(f"stylefinder: {exc}", file=sys.stderr)
        if not _ask(f"Remove these {len(exc.removals)} items?"):
            print("stylefinder: nothing was written", file=sys.stderr)
            return 1
    return _run_index(args, allow_removals=True)


def _build_options(args: argparse.Namespace) -> dict:
    """The `build_index` options of an `index` command (not the catalog, its metadata, the
    removals or the progress bar)."""
    return {
        "dry_run": args.dry_run,
        "max_removal_share": args.max_removals,
        "rebuild": args.rebuild,
        "ann": args.ann,
        "backbone": args.backbone,
        "pooling": args.pooling,
        "weights": args.weights,
        "runtime": args.runtime,
        "precision": args.precision,
        "batch_size": args.batch_size or 64,
        "threads": args.threads,
        "checkpoint_seconds": args.checkpoint_seconds,
        "recognize": not args.no_recognize,
        "imagenet_categories": args.imagenet_categories,
        "engine": args.engine,
        "ray_address": args.address,
        "ray_workers": args.workers,
        "ray_batch_size": args.batch_size,
    }


def _run_index(args: argparse.Namespace, *, allow_removals: bool) -> int:
    from stylefinder.jobs.build import build_index

    summary = build_index(
        args.catalog,
        args.index,
        allow_removals=allow_removals,
        metadata_csv=args.meta,
        progress=not args.no_progress and not args.json,
        **_build_options(args),
    )
    if args.json:
        payload = dict(summary.__dict__, images_per_second=summary.images_per_second)
        print(json.dumps(payload, indent=2, default=list))
        return 0
    if summary.dry_run:
        _print_plan(summary, args.index)
        return 0
    _print_index_summary(summary, args)
    return 0


def _print_index_summary(summary, args: argparse.Namespace) -> None:
    if summary.embedded_ahead:
        rate = f"{summary.embedded_ahead} while downloading"
    else:
        rate = f"{summary.images_per_second:.1f} images/s"
    print(
        f"indexed {summary.total} items in {args.index}: {summary.embedded} embedded "
        f"({summary.embedded - summary.changed} new, {summary.changed} changed, "
        f"{rate}), {summary.reused} reused by content, "
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


# -- product feeds ---------------------------------------------------------------------------------

#: Failed URLs and feed problems printed by a feed sync (--json lists them all).
FEED_LINES_SHOWN = 20


def _index_feed(args: argparse.Namespace) -> int:
    """`stylefinder index --feed FEED --index DIR [--every INTERVAL]`: sync a product feed
    into the index, once or every INTERVAL until Ctrl-C."""
    from stylefinder.errors import RemovalGuardError
    from stylefinder.jobs.feed import sync_every, sync_feed

    if args.meta:
        raise ValueError("--meta is for folders: a feed carries its products' metadata")
    asked: dict[str, int] = {}
    options: dict = dict(_build_options(args), feed_format=args.feed_format)
    options["progress"] = not args.no_progress and not args.json and args.every is None
    if args.allow_removals:
        options["allow_removals"] = True
    else:
        options["confirm"] = _feed_removals_prompt(args, asked)
    if args.every is None:
        try:
            summary = sync_feed(args.feed, args.index, **options)
        except RemovalGuardError as exc:
            _print_feed_refusal(exc, asked, args)
            return 1
        _print_feed_summary(summary, args)
        return 0

    rounds = {"done": 0}

    def on_round(outcome) -> None:
        rounds["done"] = outcome.number
        _print_round(outcome, args, asked)
        sys.stdout.flush()

    try:
        sync_every(args.feed, args.index, args.every, on_round=on_round, **options)
    except KeyboardInterrupt:
        print(
            f"stylefinder: stopped after {rounds['done']} finished rounds (an unfinished one "
            "keeps its last checkpoint; the next sync completes it)",
            file=sys.stderr,
        )
    return 0


def _feed_removals_prompt(args: argparse.Namespace, asked: dict[str, int]):
    """`confirm` for `sync_feed`: on a terminal, show what the sync would remove and ask."""

    def confirm(removals: list[str], items: int) -> bool:
        asked["removals"], asked["items"] = len(removals), items
        if not sys.stdin.isatty():
            return False
        print(
            f"stylefinder: this sync would remove {len(removals)} of the index's {items} items "
            f"(over the {args.max_removals:.0%} limit): products gone from the feed, or photos "
            "whose URL answers 404 or 410",
            file=sys.stderr,
        )
        for item_id in removals[:FEED_LINES_SHOWN]:
            print(f"  would remove {item_id}", file=sys.stderr)
        if len(removals) > FEED_LINES_SHOWN:
            print(f"  ... and {len(removals) - FEED_LINES_SHOWN} more", file=sys.stderr)
        return _ask(f"Remove these {len(removals)} items?")

    return confirm


def _refusal_message(exc, asked: dict[str, int], args: argparse.Namespace) -> str:
    items = asked.get("items")
    of = f" of the index's {items} items" if items else ""
    return (
        f"this sync would remove {len(exc.removals)}{of} (over the {args.max_removals:.0%} "
        f"limit), so it removed nothing: check the feed ({args.feed}); if the removals are "
        "wanted, run again with --allow-removals (or a higher --max-removals). Would remove: "
        + ", ".join(exc.removals[:10])
        + (f" and {len(exc.removals) - 10} more" if len(exc.removals) > 10 else "")
    )


def _print_feed_refusal(exc, asked: dict[str, int], args: argparse.Namespace) -> None:
    print(f"stylefinder: {_refusal_message(exc, asked, args)}", file=sys.stderr)
    print("stylefinder: the index was not changed", file=sys.stderr)


def _print_round(outcome, args: argparse.Namespace, asked: dict[str, int]) -> None:
    """One round of `--every`: its summary, or why it failed; then when the next one runs."""
    from stylefinder.errors import RemovalGuardError

    stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    next_round = f"next sync in {_duration(max(0.0, args.every - outcome.seconds))}"
    if outcome.error is not None:
        error = outcome.error
        reason = (
            _refusal_message(error, asked, args)
            if isinstance(error, RemovalGuardError)
            else str(error)
        )
        if args.json:
            payload = {"round": outcome.number, "at": stamp, "error": reason}
            print(json.dumps(payload))
        else:
            print(f"[{stamp}] round {outcome.number} failed: {reason}; {next_round}")
        return
    if args.json:
        print(json.dumps({"round": outcome.number, "at": stamp, **outcome.summary.to_dict()}))
        return
    print(f"[{stamp}] round {outcome.number}:")
    _print_feed_summary(outcome.summary, args)
    print(next_round)


def _print_feed_summary(summary, args: argparse.Namespace) -> None:
    """What a feed sync did: the feed stage's counts, failures by reason (the first URLs),
    the feed's problems, then the index's own summary."""
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return
    fetch = summary.fetch
    failed = sum(fetch.failure_counts.values())
    kept = f" ({fetch.kept} keep their copy from before)" if fetch.kept else ""
    print(
        f"feed {fetch.feed} ({fetch.format}): {fetch.products} products, {fetch.images} "
        f"photos: {fetch.downloaded} downloaded, {fetch.not_modified} not modified, "
        f"{fetch.unchanged} unchanged, {failed} failed{kept}, {summary.removed} removed "
        f"({fetch.seconds:.1f} s)"
    )
    if failed:
        reasons = ", ".join(f"{reason} {n}" for reason, n in fetch.failure_counts.items())
        print(f"failed by reason: {reasons} (retried on the next sync)")
        failures = summary.to_dict(max_failures=FEED_LINES_SHOWN)["failures"]
        for failure in failures:
            print(f"  {failure['reason']}: {failure['url']} ({failure['detail']})")
        if failed > len(failures):
            print(f"  ... and {failed - len(failures)} more (--json lists them all)")
    if fetch.retried:
        print(f"{fetch.recovered} of the {fetch.retried} URLs that failed last time came now")
    if fetch.problems:
        print(f"feed problems ({len(fetch.problems)}):")
        for problem in fetch.problems[:FEED_LINES_SHOWN]:
            print(f"  {problem}")
        if len(fetch.problems) > FEED_LINES_SHOWN:
            print(f"  ... and {len(fetch.problems) - FEED_LINES_SHOWN} more")
    if summary.index.dry_run:
        _print_plan(summary.index, args.index)
        print(f"  (the feed's photos were fetched into {args.index}/feed; the index is unchanged)")
        return
    _print_index_summary(summary.index, args)


def _duration(seconds: float) -> str:
    """A time for people: 45 s, 30 min, 6 h, 1.5 d.

    Example:
        >>> _duration(21600), _duration(90), _duration(5)
        ('6 h', '1.5 min', '5 s')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.0f} s"


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
