"""The `stylefinder` command's arguments: one subcommand per task, each run by a handler of
a `*_commands` module.

Example:
    >>> build_parser().parse_args(["info", "--index", "shop-index"]).index
    'shop-index'
"""

from __future__ import annotations

import argparse
import os

from stylefinder._version import __version__
from stylefinder.catalog.feeds.formats import FEED_FORMATS
from stylefinder.cli import (
    config_commands,
    eval_commands,
    index_commands,
    query_commands,
    server_commands,
    shopper_commands,
)
from stylefinder.embed.registry import DEFAULT_BACKBONE, POOLINGS
from stylefinder.jobs.build import DEFAULT_MAX_REMOVAL_SHARE, ENGINES

FILTER_HELP = (
    "only items whose metadata COLUMN is VALUE: a,b for any of, text case-insensitive; numbers: "
    "COLUMN<50, COLUMN>=20, COLUMN=20..80 (repeat for more values or columns)"
)


DATABASE_URL_VARIABLE = "STYLEFINDER_DATABASE_URL"

FEED_EPILOG = """\
product feeds:
  stylefinder index --feed products_export.csv --index shop-index
  stylefinder index --feed https://shop.example/feed.xml --index shop-index --every 6h

  Each photo is an item "<product id>#<position>"; a re-sync downloads only new or changed
  photos (ETag, Last-Modified, content hash), retries the ones that failed, and removes
  the products gone from the feed (asking first when they are more than --max-removals).
  Instead of --every, a crontab line syncs every 6 hours (without a terminal nobody is
  asked before many removals: such a run stops, unless given --allow-removals):

  0 */6 * * * stylefinder index --feed URL --index DIR --no-progress >> DIR.log 2>&1
"""


def _index_option(parser: argparse.ArgumentParser, what: str, *, required: bool = True) -> None:
    """`--index DIR|URL`: an index directory or a `postgresql://` URL, by default the
    STYLEFINDER_DATABASE_URL environment variable when it is set."""
    default = os.environ.get(DATABASE_URL_VARIABLE) or None
    parser.add_argument(
        "--index",
        required=required and default is None,
        default=default,
        metavar="DIR|URL",
        help=f"{what}, or a postgresql://USER@HOST/DB?schema=NAME catalog "
        f"(default: ${DATABASE_URL_VARIABLE})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; each sets `run`, the handler that runs it."""
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
    demo.set_defaults(run=index_commands.demo_data)

    index = sub.add_parser(
        "index",
        help="embed a catalog folder, or a shop's product feed, into an index (incremental)",
        description="stylefinder index CATALOG --index DIR | stylefinder index --feed FEED "
        "--index DIR [--feed-format F] [--every 6h]: embed new and changed photos of a folder, "
        "or download and embed the photos of a product feed (Shopify export, Google Merchant "
        "TSV or XML, WooCommerce CSV, CSV or JSON list); a re-run fetches only what changed",
        epilog=FEED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = index.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "catalog",
        nargs="?",
        help="folder of product photos (searched recursively), or a text file listing image "
        "paths under its own folder, one per line",
    )
    source.add_argument(
        "--feed",
        metavar="FEED",
        help="a product feed to index instead of a folder: a file or an http(s) URL; its "
        "photos are kept in DIR/feed/",
    )
    index.add_argument(
        "--feed-format",
        choices=FEED_FORMATS,
        default="auto",
        help="with --feed: the feed's format (default auto: detected from its header)",
    )
    index.add_argument(
        "--every",
        type=interval,
        metavar="INTERVAL",
        help="with --feed: sync again every INTERVAL (30m, 6h, 1d; s/m/h/d) until Ctrl-C; "
        "a round that fails is reported and the next one runs",
    )
    _index_option(index, "index directory (created if missing)")
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
    index.add_argument(
        "--batch-size",
        type=int,
        help="images per model run (default 64); with --engine ray, per batch sent to a worker "
        "(default 32)",
    )
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
        help="without a tuned classifier, predict category_pred: from zero-shot prompts on a "
        "CLIP-family backbone, else from the ImageNet head (read from the same model run as "
        "the vector)",
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
        type=share,
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
    index.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="where images are decoded and embedded: here, or on a Ray cluster "
        "(pip install 'stylefinder[ray]')",
    )
    index.add_argument(
        "--address",
        help="with --engine ray: the cluster (auto: the running one, ray://HOST:10001; "
        "default: a local cluster for this run)",
    )
    index.add_argument(
        "--workers", type=int, help="with --engine ray: embedding actors (default: one per CPU)"
    )
    index.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    index.add_argument("--json", action="store_true", help="print the summary as JSON")
    index.set_defaults(run=index_commands.index)

    config = sub.add_parser("config", help="how items are shown: title, price, link, facets")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_set = config_sub.add_parser(
        "set",
        help="set display settings: title=COL price=COL link=COL facets=A,B|auto hidden=A,B",
    )
    config_set.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    _index_option(config_set, "index directory")
    config_set.set_defaults(run=config_commands.config_set)
    config_show = config_sub.add_parser("show", help="print the display settings")
    _index_option(config_show, "index directory")
    config_show.add_argument("--json", action="store_true", help="print them as JSON")
    config_show.set_defaults(run=config_commands.config_show)

    restore = sub.add_parser(
        "restore", help="bring back the index as it was before the last `index` run"
    )
    _index_option(restore, "index directory")
    restore.add_argument("--yes", action="store_true", help="do not ask, even when it removes")
    restore.set_defaults(run=index_commands.restore)

    export = sub.add_parser(
        "export", help="copy a catalog between an index directory and PostgreSQL (either way)"
    )
    _index_option(export, "catalog to copy: an index directory")
    export.add_argument(
        "--to", required=True, metavar="DIR|URL", help="a new index directory or schema"
    )
    export.add_argument("--json", action="store_true", help="print the summary as JSON")
    export.set_defaults(run=index_commands.export)

    recognize = sub.add_parser("recognize", help="garment category and colours of a photo")
    recognize.add_argument("image", help="image file")
    _index_option(recognize, "index directory")
    recognize.add_argument("--json", action="store_true", help="print the result as JSON")
    recognize.set_defaults(run=query_commands.recognize)

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
    _index_option(event, "index directory")
    event.set_defaults(run=shopper_commands.user_event)
    load = user_sub.add_parser("import", help="import events from a CSV file")
    load.add_argument("csv", help="CSV with user_id,item_id,kind[,timestamp][,weight]")
    _index_option(load, "index directory")
    load.set_defaults(run=shopper_commands.user_import)
    forget = user_sub.add_parser("delete", help="erase every trace of a user")
    forget.add_argument("user_id")
    _index_option(forget, "index directory")
    forget.set_defaults(run=shopper_commands.user_delete)

    for_user = sub.add_parser("for-user", help="personalized recommendations for a shopper")
    for_user.add_argument("user_id")
    _index_option(for_user, "index directory")
    for_user.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    for_user.add_argument(
        "--diversity", type=float, help="MMR weight 0..1 (default 0.3; 0 = most relevant only)"
    )
    for_user.add_argument(
        "--filter", action="append", default=[], metavar="COLUMN=VALUE", help=FILTER_HELP
    )
    for_user.add_argument("--json", action="store_true", help="print results as JSON")
    for_user.set_defaults(run=shopper_commands.for_user)

    recommend = sub.add_parser("recommend", help="the k catalog items most like a photo or item")
    recommend.add_argument("image", nargs="?", help="query image file")
    recommend.add_argument("--item", help="a catalog item id: more like this item")
    _index_option(recommend, "index directory")
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
    recommend.set_defaults(run=query_commands.recommend)

    search = sub.add_parser(
        "search",
        help="the k items that best match words, a photo, or both",
        description='stylefinder search "navy linen shirt" --index DIR [-k 10] '
        "[--image PHOTO] [--filter COLUMN=VALUE]: words match the items' metadata "
        "(titles, categories, colours, ...); with a photo, the two rankings are fused",
    )
    search.add_argument("text", nargs="?", help="words to search for")
    search.add_argument("--image", help="a query photo (alone, or with the words)")
    _index_option(search, "index directory")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument(
        "--filter", action="append", default=[], metavar="COLUMN=VALUE", help=FILTER_HELP
    )
    search.add_argument(
        "--text-weight",
        type=float,
        default=0.5,
        help="the words' share of the fused ranking, 0..1 (default 0.5)",
    )
    search.add_argument(
        "--no-expand",
        action="store_true",
        help="words alone: only items whose words match (not also their look-alikes)",
    )
    search.add_argument("--weights", help="local weights for the index's backbone")
    search.add_argument("--json", action="store_true", help="print results as JSON")
    search.set_defaults(run=query_commands.search)

    info = sub.add_parser("info", help="summarize an index")
    _index_option(info, "index directory")
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=query_commands.info)

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
    _index_option(evaluate, "index directory", required=False)
    evaluate.add_argument("--label-column", help="metadata column with labels")
    evaluate.add_argument("--raw", action="store_true", help="ignore the index's projection")
    evaluate.add_argument(
        "--title-column",
        help="also score full-text search of this column with the label names as queries "
        "(default: the display settings' title, if set)",
    )
    evaluate.add_argument("--backbone", default="efficientnet-lite0", help="fashion-mnist only")
    evaluate.add_argument("--epochs", type=int, default=12, help="fashion-mnist tuning epochs")
    evaluate.add_argument("--held-out", default="Shirt", help="fashion-mnist held-out class")
    evaluate.add_argument("--limit", type=int, help="fashion-mnist: first N images of each split")
    evaluate.add_argument("--users", type=int, default=300, help="personalization: shoppers")
    evaluate.add_argument("--seed", type=int, default=0, help="personalization: random seed")
    evaluate.add_argument("--k", default="1,5,10", help="cut-offs, comma-separated (1,5,10)")
    evaluate.add_argument("--report", help="folder for report.json, report.md and PNG plots")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(run=eval_commands.evaluate)

    tune = sub.add_parser("tune", help="learn a projection from labels (or --reset it)")
    _index_option(tune, "index directory to tune")
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
    tune.set_defaults(run=index_commands.tune)

    app = sub.add_parser("app", help="start the web app (Streamlit) on an index")
    _index_option(app, "index directory")
    app.add_argument("--port", type=int, default=8501)
    app.add_argument("--host", default="127.0.0.1", help="address to listen on")
    app.add_argument("--max-upload-mb", type=int, default=10, help="largest upload (default 10)")
    app.set_defaults(run=server_commands.start_app)

    serve = sub.add_parser("serve", help="start the HTTP API (FastAPI under uvicorn)")
    _index_option(serve, "index directory")
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
    serve.add_argument(
        "--feed", help="the product feed (path or URL) that POST /v1/feeds/sync re-syncs"
    )
    serve.add_argument("--feed-format", choices=FEED_FORMATS, default="auto")
    serve.set_defaults(run=server_commands.start_api)

    backbones = sub.add_parser("backbones", help="list the available backbones")
    backbones.set_defaults(run=query_commands.backbones)
    return parser


def share(text: str) -> float:
    """A share of the items, as 0.2 or 20% (for `--max-removals`).

    Example:
        >>> share("20%"), share("0.5")
        (0.2, 0.5)
    """
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        message = f"wants a share such as 0.2 or 20%, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"wants a share between 0 and 1, got {text!r}")
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def interval(text: str) -> float:
    """A time between syncs, in seconds: 90 (seconds), 90s, 30m, 6h or 1d (for `--every`).

    Example:
        >>> interval("6h"), interval("30m"), interval("1.5d"), interval("45")
        (21600.0, 1800.0, 129600.0, 45.0)
    """
    cleaned = text.strip().lower()
    unit = cleaned[-1:] if cleaned[-1:] in _UNITS else "s"
    number = cleaned[:-1] if cleaned[-1:] in _UNITS else cleaned
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        message = f"wants a time such as 30m, 6h or 1d (s/m/h/d), got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"wants a positive time, got {text!r}")
    return seconds
