"""The `stylefinder` command: argument parsing and printing around the library's functions."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sqlite3
import sys
from collections.abc import Sequence

from stylefinder._version import __version__
from stylefinder.embed.registry import DEFAULT_BACKBONE, POOLINGS, list_backbones
from stylefinder.errors import BadFilterError, StylefinderError, UnknownColumnError
from stylefinder.jobs.build import DEFAULT_MAX_REMOVAL_SHARE

FILTER_HELP = (
    "only items whose metadata COLUMN is VALUE: a,b for any of, text case-insensitive; numbers: "
    "COLUMN<50, COLUMN>=20, COLUMN=20..80 (repeat for more values or columns)"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failure, 2 bad usage)."""
    parser = _parser()
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["stylefinder", *argv])  # recorded in reports
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args) or 0
    except (UnknownColumnError, BadFilterError) as exc:  # usage mistakes: like argparse's, 2
        print(f"stylefinder: error: {exc}", file=sys.stderr)
        return 2
    except (StylefinderError, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"stylefinder: error: {exc}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:  # a store that did not say which file: still no trace
        print(f"stylefinder: error: an index database cannot be read ({exc})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stylefinder: interrupted; the index keeps its last checkpoint", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylefinder",
        description="Index a folder of clothing photos and find the most similar items.",
    )
    parser.add_argument("--version", action="version", version=f"stylefinder {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo-data", help="write the built-in labeled demo catalog")
    demo.add_argument("directory", help="folder to write images/, queries/ and catalog.csv into")
    demo.add_argument("--full", action="store_true", help="all 70,000 Fashion-MNIST images")
    demo.add_argument("--queries", help="also write held-out query photos into this folder")
    demo.set_defaults(run=_demo_data)

    index = sub.add_parser("index", help="embed a catalog folder into an index (incremental)")
    index.add_argument("catalog", help="folder of product photos (searched recursively)")
    index.add_argument("--index", required=True, help="index directory (created if missing)")
    index.add_argument("--meta", help="CSV with an id or path column plus metadata columns")
    index.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        help=f"model name (default {DEFAULT_BACKBONE}; see `stylefinder backbones`)",
    )
    index.add_argument("--pooling", choices=POOLINGS, help="global pooling (default: backbone's)")
    index.add_argument("--weights", help="local weights file or directory for the backbone")
    index.add_argument("--runtime", choices=("onnx", "torch"), default="onnx")
    index.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        help="int8 quantizes the backbone: faster, see the README for its effect on quality",
    )
    index.add_argument("--batch-size", type=int, default=64)
    index.add_argument(
        "--threads",
        type=int,
        help="images decoded and embedded at once (default: $STYLEFINDER_THREADS, else all cores)",
    )
    index.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=30.0,
        help="commit finished work at least this often (default 30)",
    )
    index.add_argument(
        "--no-recognize",
        action="store_true",
        help="skip naming each item's colours (and category) after embedding",
    )
    index.add_argument(
        "--imagenet-categories",
        action="store_true",
        help="without a tuned classifier, predict category_pred from the ImageNet head "
        "(read from the same model run as the vector)",
    )
    index.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be added, changed and removed, and write nothing",
    )
    index.add_argument(
        "--allow-removals",
        "--prune",
        action="store_true",
        help="remove the items whose files are gone even when they are many",
    )
    index.add_argument(
        "--max-removals",
        type=_share,
        default=DEFAULT_MAX_REMOVAL_SHARE,
        metavar="SHARE",
        help="stop before writing when a run would remove more than this share of the items "
        f"(default {DEFAULT_MAX_REMOVAL_SHARE}); asks first on a terminal",
    )
    index.add_argument(
        "--rebuild",
        action="store_true",
        help="set the index's files aside (a damaged index) and build it anew from the folder",
    )
    index.add_argument(
        "--ann",
        choices=("auto", "exact", "hnsw"),
        default=None,
        help="how searches find candidates: exact (every row scored), hnsw (a faiss graph, "
        "for large catalogs), auto (hnsw from 20,000 items; the default, or what the index "
        "was last built with)",
    )
    index.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    index.add_argument("--json", action="store_true", help="print the summary as JSON")
    index.set_defaults(run=_index)

    config = sub.add_parser("config", help="how items are shown: title, price, link, facets")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_set = config_sub.add_parser(
        "set",
        help="set display settings: title=COL price=COL link=COL facets=A,B|auto hidden=A,B",
    )
    config_set.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    config_set.add_argument("--index", required=True, help="index directory")
    config_set.set_defaults(run=_config_set)
    config_show = config_sub.add_parser("show", help="print the display settings")
    config_show.add_argument("--index", required=True, help="index directory")
    config_show.add_argument("--json", action="store_true", help="print them as JSON")
    config_show.set_defaults(run=_config_show)

    restore = sub.add_parser(
        "restore", help="bring back the index as it was before the last `index` run"
    )
    restore.add_argument("--index", required=True, help="index directory")
    restore.add_argument("--yes", action="store_true", help="do not ask, even when it removes")
    restore.set_defaults(run=_restore)

    recognize = sub.add_parser("recognize", help="garment category and colours of a photo")
    recognize.add_argument("image", help="image file")
    recognize.add_argument("--index", required=True, help="index directory")
    recognize.add_argument("--json", action="store_true", help="print the result as JSON")
    recognize.set_defaults(run=_recognize)

    user = sub.add_parser("user", help="record shoppers' events (view, like, dislike, ...)")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    event = user_sub.add_parser("event", help="record one event: USER did KIND to ITEM")
    event.add_argument("user_id")
    event.add_argument("item_id")
    event.add_argument(
        "--kind", required=True, choices=("view", "like", "dislike", "add_to_cart", "purchase")
    )
    event.add_argument("--weight", type=float, help="optional weight (default by kind)")
    event.add_argument("--time", help="ISO 8601 time or epoch seconds (default now)")
    event.add_argument("--index", required=True, help="index directory")
    event.set_defaults(run=_user_event)
    load = user_sub.add_parser("import", help="import events from a CSV file")
    load.add_argument("csv", help="CSV with user_id,item_id,kind[,timestamp][,weight]")
    load.add_argument("--index", required=True, help="index directory")
    load.set_defaults(run=_user_import)
    forget = user_sub.add_parser("delete", help="erase every trace of a user")
    forget.add_argument("user_id")
    forget.add_argument("--index", required=True, help="index directory")
    forget.set_defaults(run=_user_delete)

    for_user = sub.add_parser("for-user", help="personalized recommendations for a shopper")
    for_user.add_argument("user_id")
    for_user.add_argument("--index", required=True, help="index directory")
    for_user.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    for_user.add_argument(
        "--diversity", type=float, help="MMR weight 0..1 (default 0.3; 0 = most relevant only)"
    )
    for_user.add_argument(
        "--filter", action="append", default=[], metavar="COLUMN=VALUE", help=FILTER_HELP
    )
    for_user.add_argument("--json", action="store_true", help="print results as JSON")
    for_user.set_defaults(run=_for_user)

    recommend = sub.add_parser("recommend", help="the k catalog items most like a photo or item")
    recommend.add_argument("image", nargs="?", help="query image file")
    recommend.add_argument("--item", help="a catalog item id: more like this item")
    recommend.add_argument("--index", required=True, help="index directory")
    recommend.add_argument("-k", type=int, default=5, help="number of results (default 5)")
    recommend.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help=FILTER_HELP,
    )
    recommend.add_argument("--weights", help="local weights for the index's backbone")
    recommend.add_argument("--json", action="store_true", help="print results as JSON")
    recommend.set_defaults(run=_recommend)

    info = sub.add_parser("info", help="summarize an index")
    info.add_argument("--index", required=True, help="index directory")
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=_info)

    evaluate = sub.add_parser(
        "eval",
        help="leave-one-out retrieval quality of a labeled index, or of Fashion-MNIST",
        description="stylefinder eval --index DIR --label-column C | stylefinder eval "
        "fashion-mnist [--backbone NAME]",
    )
    evaluate.add_argument(
        "target",
        nargs="?",
        choices=["index", "fashion-mnist", "personalization"],
        default="index",
        help="index (default): the --index catalog; fashion-mnist: train 60k / test 10k; "
        "personalization: simulated shoppers on the --index catalog",
    )
    evaluate.add_argument("--index", help="index directory")
    evaluate.add_argument("--label-column", help="metadata column with labels")
    evaluate.add_argument("--raw", action="store_true", help="ignore the index's projection")
    evaluate.add_argument("--backbone", default="efficientnet-lite0", help="fashion-mnist only")
    evaluate.add_argument("--epochs", type=int, default=12, help="fashion-mnist tuning epochs")
    evaluate.add_argument("--held-out", default="Shirt", help="fashion-mnist held-out class")
    evaluate.add_argument("--limit", type=int, help="fashion-mnist: first N images of each split")
    evaluate.add_argument("--users", type=int, default=300, help="personalization: shoppers")
    evaluate.add_argument("--seed", type=int, default=0, help="personalization: random seed")
    evaluate.add_argument("--k", default="1,5,10", help="cut-offs, comma-separated (1,5,10)")
    evaluate.add_argument("--report", help="folder for report.json, report.md and PNG plots")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(run=_eval)

    tune = sub.add_parser("tune", help="learn a projection from labels (or --reset it)")
    tune.add_argument("--index", required=True, help="index directory to tune")
    tune.add_argument("--label-column", help="metadata column with labels")
    tune.add_argument("--train-index", help="learn from this index's labels instead")
    tune.add_argument(
        "--method",
        choices=["mlp", "linear"],
        default="mlp",
        help="mlp: small network + classifier (default); linear: discriminant directions",
    )
    tune.add_argument("--dim", type=int, help="output dimensions (mlp 128, linear 64)")
    tune.add_argument("--epochs", type=int, default=12, help="mlp training epochs (default 12)")
    tune.add_argument("--reset", action="store_true", help="remove the projection")
    tune.set_defaults(run=_tune)

    app = sub.add_parser("app", help="start the web app (Streamlit) on an index")
    app.add_argument("--index", required=True, help="index directory")
    app.add_argument("--port", type=int, default=8501)
    app.add_argument("--host", default="127.0.0.1", help="address to listen on")
    app.add_argument("--max-upload-mb", type=int, default=10, help="largest upload (default 10)")
    app.set_defaults(run=_app)

    serve = sub.add_parser("serve", help="start the HTTP API (FastAPI under uvicorn)")
    serve.add_argument("--index", required=True, help="index directory")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--admin-key-file", help="file holding the admin API key (or STYLEFINDER_ADMIN_KEY)"
    )
    serve.add_argument(
        "--read-key-file", help="file holding a read API key (or STYLEFINDER_READ_KEY)"
    )
    serve.add_argument("--max-upload-mb", type=float, default=10.0)
    serve.add_argument("--timeout", type=float, default=30.0, help="request timeout, seconds")
    serve.set_defaults(run=_serve)

    backbones = sub.add_parser("backbones", help="list the available backbones")
    backbones.set_defaults(run=_backbones)
    return parser


def _demo_data(args: argparse.Namespace) -> int:
    from stylefinder.catalog.demo import write_demo_catalog

    demo = write_demo_catalog(args.directory, full=args.full, queries_dir=args.queries)
    print(f"wrote {demo.count} images and {demo.csv_path}")
    if demo.queries:
        print(f"wrote {len(demo.queries)} held-out query photos to {args.queries}")
    return 0


def _share(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        message = f"wants a share such as 0.2 or 20%, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"wants a share between 0 and 1, got {text!r}")
    return value


def _ask(question: str) -> bool:
    """Ask a yes/no question on the terminal; False without one (scripts, CI)."""
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _index(args: argparse.Namespace) -> int:
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
        batch_size=args.batch_size,
        threads=args.threads,
        checkpoint_seconds=args.checkpoint_seconds,
        progress=not args.no_progress and not args.json,
        recognize=not args.no_recognize,
        imagenet_categories=args.imagenet_categories,
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


def _config_set(args: argparse.Namespace) -> int:
    from stylefinder.recommend.display import parse_display_assignments, write_display

    settings = write_display(args.index, parse_display_assignments(args.assignments))
    print(f"display settings of {args.index}:")
    _print_display(settings.to_dict())
    return 0


def _config_show(args: argparse.Namespace) -> int:
    from stylefinder.index.store import IndexStore
    from stylefinder.recommend.display import facet_columns, read_display

    snapshot = IndexStore.open(args.index).snapshot()
    settings = read_display(snapshot.state)
    shown = settings.to_dict()
    if settings.facets is None:
        shown["facets"] = f"auto: {', '.join(facet_columns(snapshot.items, settings)) or 'none'}"
    if args.json:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    else:
        _print_display(shown)
    return 0


def _print_display(settings: dict) -> None:
    for key, value in settings.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(value) or "none"
        print(f"  {key:<7} {value if value is not None else '(unset)'}")


def _restore(args: argparse.Namespace) -> int:
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


def _annotate(index_dir: str) -> None:
    from stylefinder.jobs.annotate import annotate_index

    done = annotate_index(index_dir)
    source = f", category_pred from the {done.source}" if done.source else ""
    print(f"recognized colours of {done.colours} new items{source}")


def _recognize(args: argparse.Namespace) -> int:
    from stylefinder.engine import Engine

    recognition = Engine.open(args.index).recognize(args.image)
    if args.json:
        print(json.dumps(recognition.to_dict(), indent=2))
        return 0
    top = ", ".join(f"{label} {p:.2f}" for label, p in recognition.categories)
    source = {"classifier": "the index's classifier", "imagenet": "the ImageNet fallback"}
    print(f"category: {recognition.category}  ({top}; from {source[recognition.source]})")
    colours = ", ".join(f"{c.name} {c.share:.0%}" for c in recognition.colours)
    print(f"colours:  {colours or 'none found'}")
    if recognition.source == "imagenet":
        print(
            "note: without a tuned classifier the category is ImageNet's rough guess; "
            f"`stylefinder tune --index {args.index} --label-column COLUMN` learns categories "
            "from the shop's own labels"
        )
    return 0


def _user_event(args: argparse.Namespace) -> int:
    from stylefinder.engine import Engine

    event = Engine.open(args.index).record_event(
        args.user_id, args.item_id, args.kind, timestamp=args.time, weight=args.weight
    )
    print(f"recorded: {event.user_id} {event.kind} {event.item_id} at {event.time}")
    return 0


def _user_import(args: argparse.Namespace) -> int:
    from stylefinder.engine import Engine

    summary = Engine.open(args.index).import_events(args.csv)
    print(f"imported {summary.added} events, rejected {summary.rejected_total}")
    for line, reason in summary.rejected[:50]:
        print(f"  line {line}: {reason}")
    return 0


def _user_delete(args: argparse.Namespace) -> int:
    from stylefinder.engine import Engine

    removed = Engine.open(args.index).events.delete_user(args.user_id)
    print(f"deleted user {args.user_id}: {removed['events']} events")
    return 0


def _for_user(args: argparse.Namespace) -> int:
    from stylefinder.engine import Engine
    from stylefinder.recommend.filters import parse_filters

    engine = Engine.open(args.index)
    results = engine.recommend_for_user(
        args.user_id, k=args.k, filters=parse_filters(args.filter, "="), diversity=args.diversity
    )
    if args.json:
        print(json.dumps({"results": [r.to_dict() for r in results]}, indent=2, ensure_ascii=False))
        return 0
    known = engine.events.has_user(args.user_id)
    print(f"{len(results)} for {args.user_id}" + ("" if known else " (new shopper: popular items)"))
    for rank, result in enumerate(results, 1):
        meta = ", ".join(f"{key}={value}" for key, value in result.metadata.items())
        print(f"{rank:>3}. {result.score:.3f}  {result.id}  {meta}".rstrip())
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from stylefinder.engine import Engine
    from stylefinder.recommend.filters import parse_filters

    if (args.image is None) == (args.item is None):
        raise ValueError("give either an IMAGE or --item ID (not both)")
    filters = parse_filters(args.filter, "=")
    engine = Engine.open(args.index, weights=args.weights)
    if args.item is not None:
        results = engine.similar(args.item, k=args.k, filters=filters)
    else:
        results = engine.recommend(args.image, k=args.k, filters=filters)
    if args.json:
        print(json.dumps({"results": [r.to_dict() for r in results]}, indent=2, ensure_ascii=False))
        return 0
    query = f"item {args.item}" if args.item else args.image
    print(f"{len(results)} most similar to {query}:")
    for rank, result in enumerate(results, 1):
        meta = ", ".join(f"{key}={value}" for key, value in result.metadata.items())
        print(f"{rank:>3}. {result.score:.3f}  {result.id}  {result.path}  {meta}".rstrip())
    return 0


def _info(args: argparse.Namespace) -> int:
    from stylefinder.engine import Engine

    info = Engine.open(args.index).info()
    if args.json:
        print(json.dumps(info.to_dict(), indent=2, ensure_ascii=False))
        return 0
    facts = info.to_dict()
    columns, tuned = facts.pop("columns"), facts.pop("tuned")
    facts["size_bytes"] = f"{info.size_bytes:,} ({info.size_bytes / 1e6:.1f} MB)"
    facts["tuned"] = (
        f"yes, on {tuned['label_column']!r} ({tuned['dim']}-d, {tuned['trained_at']}"
        f"{', with a classifier' if tuned['classifier'] else ''})"
        if tuned
        else "no (`stylefinder tune --label-column COLUMN` learns from the shop's labels)"
    )
    if facts["restorable_generation"] is None:
        facts["restorable_generation"] = "none yet"
    facts["search"] = _describe_search(facts.pop("search"))
    width = max(len(key) for key in facts)
    for key, value in facts.items():
        print(f"{key.replace('_', ' '):<{width}}  {value}")
    if columns:
        name_width = max(len(c["name"]) for c in columns)
        print(f"\ncolumns:\n  {'name':<{name_width}}  kind      distinct  filled")
        for c in columns:
            print(
                f"  {c['name']:<{name_width}}  {c['kind']:<8}  {c['distinct']:>8,}  "
                f"{c['filled']:>6,}"
            )
    return 0


def _describe_search(params: dict) -> str:
    """One line on how searches find candidates, from `IndexInfo.search`."""
    if params.get("kind") != "hnsw":
        return "exact (every item scored; `stylefinder index --ann hnsw` builds a graph)"
    text = (
        f"hnsw graph ({params.get('library', 'faiss')}, {params.get('codes', 'int8')} codes, "
        f"degree {params.get('degree')}, search width {params.get('search_width')}, "
        f"{params.get('rescore', params.get('search_width'))} candidates rescored"
    )
    if params.get("recall_at_10") is not None:
        text += f": recall@10 {params['recall_at_10']} on {params.get('queries')} queries"
    text += f"; {params.get('nodes', 0):,} nodes"
    if params.get("tombstones"):
        text += f", {params['tombstones']:,} removed"
    if params.get("uncovered"):
        text += f", {params['uncovered']:,} added rows scored exactly"
    return text + ")"


def _eval(args: argparse.Namespace) -> int:
    from stylefinder.evaluate.retrieval import evaluate_index

    if args.target == "fashion-mnist":
        return _eval_fashion_mnist(args)
    if not args.index or not args.label_column:
        raise ValueError("eval needs --index and --label-column (or: eval fashion-mnist)")
    if args.target == "personalization":
        return _eval_personalization(args)

    try:
        ks = [int(k) for k in args.k.split(",") if k.strip()]
    except ValueError:
        raise ValueError(f"--k wants comma-separated integers, got {args.k!r}") from None
    if not ks or min(ks) < 1:
        raise ValueError("--k wants positive integers")
    result = evaluate_index(args.index, label_column=args.label_column, ks=ks, raw=args.raw)
    if args.report:
        from stylefinder.evaluate.report import write_report

        write_report(result, args.report, index_dir=args.index, command=args.command_line)
    for warning in result.warnings:
        print(f"stylefinder: WARNING: {warning}", file=sys.stderr)
    if args.json:
        payload = {"items": result.items, "dim": result.dim, "tuned": result.tuned}
        payload.update(metrics=result.metrics, per_class=result.per_class)
        print(json.dumps({**payload, "warnings": result.warnings}, indent=2))
        return 0
    space = f"{result.dim}-d tuned space" if result.tuned else f"{result.dim}-d space"
    print(f"leave-one-out over {result.items:,} items labeled by {args.label_column!r} ({space}):")
    for name, value in result.metrics.items():
        print(f"  {name:<14} {value:.4f}")
    width = max(len(row["label"]) for row in result.per_class)
    print(f"\n  {'label':<{width}}  items  precision@5  top-1")
    for row in result.per_class:
        print(
            f"  {row['label']:<{width}}  {row['items']:>5}  {row.get('precision@5', 0):>11.3f}"
            f"  {row['top1_accuracy']:.3f}"
        )
    if args.report:
        print(f"\nreport written to {args.report}/report.md")
    return 0


def _eval_fashion_mnist(args: argparse.Namespace) -> int:
    from stylefinder.evaluate.fashion_mnist import evaluate_fashion_mnist

    print(f"Fashion-MNIST, {args.backbone} (embeddings are cached after the first run):")
    result = evaluate_fashion_mnist(
        args.backbone,
        held_out=args.held_out,
        epochs=args.epochs,
        limit=args.limit,
        report_dir=args.report,
        command=args.command_line,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"\n{'configuration':<44} {'P@1':>6} {'P@5':>6} {'P@10':>6} {'mAP@10':>6}")
    for row in result["rows"]:
        print(
            f"{row['configuration']:<44} {row['precision@1']:>6.3f} {row['precision@5']:>6.3f} "
            f"{row['precision@10']:>6.3f} {row['mAP@10']:>6.3f}"
        )
    classifier, held = result["classifier"], result["held_out"]
    print(
        f"\nclassifier top-1 accuracy {classifier['top1_accuracy']:.4f} (top-3 "
        f"{classifier['top3_accuracy']:.4f}); held-out class {held['class']}: precision@5 raw "
        f"{held['raw']:.4f}, tuned without it {held['tuned_without_it']:.4f}"
    )
    if args.report:
        print(f"report written to {args.report}/report.md")
    return 0


def _eval_personalization(args: argparse.Namespace) -> int:
    from stylefinder.evaluate.personalization import evaluate_personalization

    result = evaluate_personalization(
        args.index,
        args.label_column,
        users=args.users,
        seed=args.seed,
        report_dir=args.report,
        command=args.command_line,
    )
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    metrics = ["hit_rate@10", "precision@10", "ndcg@10", "intra_list_diversity", "coverage"]
    print(f"{args.users} simulated shoppers on {args.index} ({args.label_column!r}):")
    print(f"{'method':<28}" + "".join(f"{m:>22}" for m in metrics))
    for name, row in result["methods"].items():
        print(f"{name:<28}" + "".join(f"{row.get(m, float('nan')):>22.3f}" for m in metrics))
    if args.report:
        print(f"report written to {args.report}/report.md")
    return 0


def _tune(args: argparse.Namespace) -> int:
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


def _app(args: argparse.Namespace) -> int:
    try:
        from stylefinder.app import run_app
    except ImportError as exc:
        raise ValueError(f"the web app needs: pip install 'stylefinder[app]' ({exc})") from exc
    return run_app(args.index, port=args.port, host=args.host, max_upload_mb=args.max_upload_mb)


def _serve(args: argparse.Namespace) -> int:
    try:
        from stylefinder.serve import serve
    except ImportError as exc:
        raise ValueError(f"the API needs: pip install 'stylefinder[serve]' ({exc})") from exc
    print(f"stylefinder API: http://{args.host}:{args.port}/docs", flush=True)
    serve(
        args.index,
        host=args.host,
        port=args.port,
        workers=args.workers,
        admin_key_file=args.admin_key_file,
        read_key_file=args.read_key_file,
        max_upload_mb=args.max_upload_mb,
        request_timeout=args.timeout,
    )
    return 0


def _backbones(args: argparse.Namespace) -> int:
    for spec in list_backbones():
        prep = spec.preprocessing
        print(
            f"{spec.name:<20} {spec.dim:>5}-d  {prep.input_size}px  "
            f"{spec.default_pooling:<4} {spec.description}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
