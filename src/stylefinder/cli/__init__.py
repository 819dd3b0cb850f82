"""The `stylefinder` command: argument parsing and printing around the library's functions.

`parser` defines the subcommands; each `*_commands` module runs a group of them.

Example:
    >>> main(["info", "--index", "shop-index"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import logging
import shlex
import sqlite3
import sys
from collections.abc import Sequence

from stylefinder.cli.parser import build_parser
from stylefinder.errors import (
    BadFilterError,
    NotOnPostgresError,
    StylefinderError,
    UnknownColumnError,
)
from stylefinder.index.pg_connect import is_database_url

__all__ = ["main"]

#: commands that read or write an index directory's own files (a tuned projection, restore
#: points, display settings), not yet a PostgreSQL catalog
DIRECTORY_COMMANDS = frozenset({"restore"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failure, 2 bad usage)."""
    parser = build_parser()
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["stylefinder", *argv])  # recorded in reports
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _check_backend(args)
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


def _check_backend(args) -> None:
    if args.command in DIRECTORY_COMMANDS and is_database_url(str(getattr(args, "index", ""))):
        raise NotOnPostgresError(
            f"`stylefinder {args.command}` works on index directories only, for now: "
            "`stylefinder export --index URL --to DIR` copies a PostgreSQL catalog into one"
        )
