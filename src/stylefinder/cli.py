"""The `stylefinder` command: argument parsing and printing around the library's functions."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Sequence

from stylefinder import __version__
from stylefinder.embed.backbones import DEFAULT_BACKBONE, POOLINGS, list_backbones
from stylefinder.errors import StylefinderError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failure, 2 bad usage)."""
    parser = _parser()
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["stylefinder", *argv])  # recorded in reports
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args) or 0
    except (StylefinderError, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"stylefinder: error: {exc}", file=sys.stderr)
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
        "--checkpoint-seconds",
        type=float,
        default=30.0,
        help="commit finished work at least this often (default 30)",
    )
    index.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    index.add_argument("--json", action="store_true", help="print the summary as JSON")
    index.set_defaults(run=_index)

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
        help="only items whose metadata COLUMN is VALUE (repeat for more values or columns)",
    )
    recommend.add_argument("--weights", help="local weights for the index's backbone")
    recommend.add_argument("--json", action="store_true", help="print results as JSON")
    recommend.set_defaults(run=_recommend)

    info = sub.add_parser("info", help="summarize an index")
    info.add_argument("--index", required=True, help="index directory")
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=_info)

    evaluate = sub.add_parser("eval", help="leave-one-out retrieval quality of a labeled index")
    evaluate.add_argument("--index", required=True, help="index directory")
    evaluate.add_argument("--label-column", required=True, help="metadata column with labels")
    evaluate.add_argument("--k", default="1,5,10", help="cut-offs, comma-separated (1,5,10)")
    evaluate.add_argument("--report", help="folder for report.json, report.md and PNG plots")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(run=_eval)

    tune = sub.add_parser("tune", help="learn a projection from labels (or --reset it)")
    tune.add_argument("--index", required=True, help="index directory to tune")
    tune.add_argument("--label-column", help="metadata column with labels")
    tune.add_argument("--train-index", help="learn from this index's labels instead")
    tune.add_argument("--dim", type=int, default=64, help="dimensions kept (default 64)")
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


def _index(args: argparse.Namespace) -> int:
    from stylefinder.pipeline import build_index

    summary = build_index(
        args.catalog,
        args.index,
        metadata_csv=args.meta,
        backbone=args.backbone,
        pooling=args.pooling,
        weights=args.weights,
        runtime=args.runtime,
        precision=args.precision,
        batch_size=args.batch_size,
        checkpoint_seconds=args.checkpoint_seconds,
        progress=not args.no_progress and not args.json,
    )
    if args.json:
        payload = dict(summary.__dict__, images_per_second=summary.images_per_second)
        print(json.dumps(payload, indent=2, default=list))
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
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from stylefinder.recommend.engine import Engine
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
    from stylefinder.recommend.engine import Engine

    info = Engine.open(args.index).info()
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return 0
    width = max(len(key) for key in info.to_dict())
    for key, value in info.to_dict().items():
        print(f"{key.replace('_', ' '):<{width}}  {value}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from stylefinder.evaluate.retrieval import evaluate_index

    try:
        ks = [int(k) for k in args.k.split(",") if k.strip()]
    except ValueError:
        raise ValueError(f"--k wants comma-separated integers, got {args.k!r}") from None
    if not ks or min(ks) < 1:
        raise ValueError("--k wants positive integers")
    result = evaluate_index(args.index, label_column=args.label_column, ks=ks)
    if args.report:
        from stylefinder.evaluate.report import write_report

        write_report(result, args.report, index_dir=args.index, command=args.command_line)
    if args.json:
        print(
            json.dumps(
                {"items": result.items, "metrics": result.metrics, "per_class": result.per_class},
                indent=2,
            )
        )
        return 0
    print(f"leave-one-out over {result.items:,} items labeled by {args.label_column!r}:")
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


def _tune(args: argparse.Namespace) -> int:
    from stylefinder.recommend.projection import reset_projection, tune_index

    if args.reset:
        removed = reset_projection(args.index)
        print("projection removed" if removed else "the index had no projection")
        return 0
    if not args.label_column:
        raise ValueError("--label-column is required (or --reset)")
    projection = tune_index(
        args.index, label_column=args.label_column, train_index=args.train_index, dim=args.dim
    )
    info = projection.info
    print(
        f"learned a {info['dim']}-d projection from {info['items']:,} items with "
        f"{info['labels']} labels ({args.label_column!r}); queries on {args.index} use it now"
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
