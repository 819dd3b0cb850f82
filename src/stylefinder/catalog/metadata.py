"""Join catalog images with a CSV of metadata (category, colour, price, ...).

A CSV row finds its image by a `path` column (relative to the catalog folder), or by an `id`
column that equals the image's file name without extension (the Kaggle "Fashion Product Images"
`styles.csv` layout, where item 15970 is `images/15970.jpg`) or its relative path. Malformed rows
are reported with their line number and skipped; they never stop the run.

The file may be UTF-8 (with or without a byte-order mark), UTF-16 or UTF-32 with a byte-order
mark; a file that is not valid UTF-8 is read as Windows-1252 (or Latin-1), with a note in
`problems`. A metadata column whose values are all plain numbers ("49", "-3", "49.90") holds
numbers: `int` when every value is an integer, else `float`. Codes stay text: a column with a
value like "00123" (a leading zero), "1e5", "nan" or more than 15 digits is kept as written.
A row with a field over `MAX_FIELD_CHARS` (128 KB, usually an embedded image) is skipped.

Example:
    >>> table = read_metadata_csv("catalog.csv", "shop-photos")  # doctest: +SKIP
    >>> table.problems  # doctest: +SKIP
    ['catalog.csv line 7: 4 fields, the header has 3']
    >>> table.by_id["15970"].metadata  # doctest: +SKIP
    {'category': 'Shirts', 'price': 49.9, 'year': 2011}
"""

from __future__ import annotations

import codecs
import csv
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol, Union

from stylefinder.catalog.scan import CatalogFile

ID_COLUMNS = ("id",)
PATH_COLUMNS = ("path", "file", "filename", "image", "image_path")
#: A metadata value: text, or a number when its whole column holds numbers.
MetadataValue = Union[str, int, float]  # noqa: UP007
#: The longest field kept, in characters; a row with a longer field is reported and skipped.
MAX_FIELD_CHARS = 128 * 1024
#: The csv module's limit while reading (its default is `MAX_FIELD_CHARS`, which would stop
#: the whole file); a field over this stops reading, with a problem saying where.
PARSER_FIELD_LIMIT = 16 * 1024 * 1024
#: More digits than this and a number is a code (a barcode): floats and JSON lose digits.
MAX_NUMBER_DIGITS = 15

_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?([0-9]+\.[0-9]*|\.[0-9]+)")
_LEADING_ZERO = re.compile(r"-?0[0-9]")


class _CsvReader(Protocol):
    """What `csv.reader` returns."""

    line_num: int

    def __next__(self) -> list[str]: ...


@dataclass(frozen=True)
class Row:
    """One good CSV row: its line number, id (if the CSV has ids) and metadata columns."""

    line: int
    item_id: str | None
    metadata: dict[str, MetadataValue]


@dataclass
class MetadataTable:
    """Parsed CSV rows, keyed for matching, plus the problems found while reading.

    `encoding` is the codec the file was read with: "utf-8", "utf-8-sig" (UTF-8 with a
    byte-order mark), "utf-16", "utf-32", or the fallbacks "cp1252" and "latin-1".
    """

    by_id: dict[str, Row] = field(default_factory=dict)
    by_path: dict[str, Row] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    good_rows: int = 0
    encoding: str = "utf-8"


@dataclass(frozen=True)
class CatalogEntry:
    """An image file with its item id and metadata, ready to be indexed."""

    item_id: str
    file: CatalogFile
    metadata: dict[str, MetadataValue]


def read_metadata_csv(csv_path: str | Path, catalog_root: str | Path) -> MetadataTable:
    """Read a metadata CSV; see the module docstring for how rows are matched to images.

    Example:
        >>> table = read_metadata_csv("shop.csv", "shop-photos")  # doctest: +SKIP
        >>> table.encoding, table.by_path["tops/b.png"].metadata  # doctest: +SKIP
        ('cp1252', {'name': 'Crème top', 'price': 49.9})
    """
    csv_path = Path(csv_path)
    root = Path(catalog_root).resolve()
    table = MetadataTable()
    where = csv_path.name
    if not csv_path.is_file():
        raise FileNotFoundError(f"metadata CSV {csv_path} does not exist")
    encoding, bom_chars, note = _detect_encoding(csv_path)
    if note:
        table.problems.append(f"{where}: {note}")
    if encoding is None:
        return table
    table.encoding = encoding
    with (
        open(csv_path, newline="", encoding=encoding) as handle,
        csv_field_limit(PARSER_FIELD_LIMIT),
    ):
        handle.read(bom_chars)  # a UTF-8 mark in a file read as cp1252 is 3 characters
        rows = _read_rows(csv.reader(handle), where, root, csv_path.resolve().parent, table)
    _numbers_to_numbers(rows)
    return table


def _read_rows(
    reader: _CsvReader, where: str, root: Path, csv_dir: Path, table: MetadataTable
) -> list[Row]:
    """Fill `table` from the rows of `reader` (header first); return the good rows."""
    header = _read_header(reader, where, table)
    if header is None:
        return []
    lower = [name.lower() for name in header]
    id_col = next((lower.index(c) for c in ID_COLUMNS if c in lower), None)
    path_col = next((lower.index(c) for c in PATH_COLUMNS if c in lower), None)
    if id_col is None and path_col is None:
        table.problems.append(
            f"{where}: no 'id' or 'path' column in header {header}; metadata ignored"
        )
        return []
    if len(set(lower)) != len(lower):
        table.problems.append(f"{where}: repeated column names in header {header}")
        return []
    rows: list[Row] = []
    real_paths = _RealPaths()
    while (values := _next_values(reader, where, table)) is not None:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue  # blank line
        if any(len(v) > MAX_FIELD_CHARS for v in values):
            table.problems.append(
                f"{where} line {line}: a field is over 128 KB; row skipped (metadata fields "
                f"must be under {MAX_FIELD_CHARS:,} characters: leave images out of the CSV)"
            )
            continue
        if len(values) != len(header):
            table.problems.append(
                f"{where} line {line}: {len(values)} fields, the header has {len(header)}"
            )
            continue
        row = {name: value.strip() for name, value in zip(header, values, strict=True)}
        item_id = values[id_col].strip() if id_col is not None else None
        if id_col is not None and not item_id:
            table.problems.append(f"{where} line {line}: empty id")
            continue
        if item_id is not None and item_id in table.by_id:
            table.problems.append(f"{where} line {line}: duplicate id {item_id!r}")
            continue
        metadata: dict[str, MetadataValue] = {
            name: value
            for index, (name, value) in enumerate(row.items())
            if index not in (id_col, path_col) and value != ""
        }
        parsed = Row(line, item_id, metadata)
        if path_col is not None:
            relpath = _normalize(values[path_col], root, csv_dir, real_paths)
            if relpath is None:
                table.problems.append(f"{where} line {line}: empty path or outside the catalog")
                continue
            if relpath in table.by_path:
                table.problems.append(f"{where} line {line}: duplicate path {relpath!r}")
                continue
            table.by_path[relpath] = parsed
        if item_id is not None:
            table.by_id[item_id] = parsed
        table.good_rows += 1
        rows.append(parsed)
    return rows


def _read_header(reader: _CsvReader, where: str, table: MetadataTable) -> list[str] | None:
    try:
        return [name.strip() for name in next(reader)]
    except StopIteration:
        table.problems.append(f"{where}: empty file, no header row")
    except csv.Error as exc:
        table.problems.append(f"{where}: unreadable header ({exc})")
    return None


def _next_values(reader: _CsvReader, where: str, table: MetadataTable) -> list[str] | None:
    """The next record's fields, or None at the end (or at an error that stops the file)."""
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        line = reader.line_num
        if "field larger than field limit" in str(exc):
            table.problems.append(
                f"{where} line {line}: a field is over {PARSER_FIELD_LIMIT >> 20} MB; stopped "
                "(leave images and other large data out of the metadata CSV)"
            )
        else:
            table.problems.append(f"{where} line {line}: unreadable ({exc}); stopped")
        return None


@contextmanager
def csv_field_limit(limit: int) -> Iterator[None]:
    """Let the csv module read fields up to `limit` characters (never lower it), then restore
    (the metadata CSV and product feeds alike).

    The limit is module-wide: a CSV read at the same time in another thread sees it too.
    """
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, limit))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _detect_encoding(path: Path) -> tuple[str | None, int, str | None]:
    """(codec, characters of byte-order mark left to skip, note for the problems).

    A byte-order mark decides; otherwise UTF-8, and if that fails for any byte of the file, the
    whole file is read as cp1252 (or latin-1, which decodes any byte): never U+FFFD. The codec
    is None when the file has a UTF-16 or UTF-32 mark but is not valid in that encoding.
    """
    with open(path, "rb") as handle:
        head = handle.read(4)
    codec = next((name for mark, name in _BOMS if head.startswith(mark)), "utf-8")
    bad_line = _first_bad_line(path, codec)
    if bad_line is None:
        return codec, 0, None
    if codec in ("utf-16", "utf-32"):
        name = codec.upper()
        return (
            None,
            0,
            f"starts with a {name} byte-order mark but is not valid {name}; save it as UTF-8",
        )
    fallback = "cp1252" if _first_bad_line(path, "cp1252") is None else "latin-1"
    bom_chars = len(codecs.BOM_UTF8) if codec == "utf-8-sig" else 0
    note = (
        f"not UTF-8 (line {bad_line} is the first that is not); read as {fallback}: "
        "if accented letters look wrong, save the file as UTF-8"
    )
    return fallback, bom_chars, note


def _first_bad_line(path: Path, codec: str) -> int | None:
    """The line number of the first byte that `codec` cannot decode, or None if all can."""
    decoder = codecs.getincrementaldecoder(codec)()
    newlines = 0
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(1 << 20)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:  # exc.object: the bytes held back, then chunk
                return newlines + exc.object[: exc.start].count(b"\n") + 1
            if not chunk:
                return None
            newlines += chunk.count(b"\n")


def _numbers_to_numbers(rows: list[Row]) -> None:
    """Turn each metadata column whose values are all plain numbers into int or float."""
    columns: dict[str, list[str]] = {}
    for row in rows:
        for name, value in row.metadata.items():
            columns.setdefault(name, []).append(str(value))
    for name, values in columns.items():
        kind = _number_kind(values)
        if kind is None:
            continue
        for row in rows:
            if name in row.metadata:
                row.metadata[name] = kind(row.metadata[name])


def _number_kind(values: list[str]) -> type[int] | type[float] | None:
    """int if every value is an integer, float if every value is a number, else None (text).

    Example:
        >>> _number_kind(["49", "49.90"]), _number_kind(["7", "-3"]), _number_kind(["00123"])
        (<class 'float'>, <class 'int'>, None)
    """
    kind: type[int] | type[float] = int
    for value in values:
        if _LEADING_ZERO.match(value) or sum(c in "0123456789" for c in value) > MAX_NUMBER_DIGITS:
            return None
        if _DECIMAL.fullmatch(value):
            kind = float
        elif not _INTEGER.fullmatch(value):
            return None
    return kind


def match_files(
    files: list[CatalogFile], table: MetadataTable | None
) -> tuple[list[CatalogEntry], list[str], int]:
    """Give each file its id and metadata. Returns (entries, problems, rows without an image).

    Without a matching row a file keeps its relative path as id and has no metadata. Two files
    that would get the same id are a problem: the second one is left out.
    """
    entries: list[CatalogEntry] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    used_lines: set[int] = set()
    for file in files:
        row = _row_for(file, table, used_lines)
        item_id = (row.item_id if row else None) or file.relpath
        if item_id in seen:
            problems.append(f"{file.relpath}: id {item_id!r} already used by {seen[item_id]}")
            continue
        if row is not None:
            used_lines.add(row.line)
        seen[item_id] = file.relpath
        entries.append(CatalogEntry(item_id, file, dict(row.metadata) if row else {}))
    unmatched = table.good_rows - len(used_lines) if table is not None else 0
    return entries, problems, unmatched


def _row_for(file: CatalogFile, table: MetadataTable | None, used: set[int]) -> Row | None:
    if table is None:
        return None
    if file.relpath in table.by_path:
        return table.by_path[file.relpath]
    for key in (file.relpath, PurePosixPath(file.relpath).stem):
        row = table.by_id.get(key)
        if row is not None and row.line not in used:
            return row
    return None


def _normalize(raw: str, root: Path, csv_dir: Path, real: _RealPaths) -> str | None:
    text = raw.strip().replace("\\", "/")
    if not text:
        return None
    options = [text] if text.startswith("/") else [f"{root}/{text}", f"{csv_dir}/{text}"]
    for option in options:
        resolved = real(option)
        relative = _inside(resolved, str(root))
        if relative is None:
            continue
        if option is options[-1] or os.path.exists(resolved):
            return relative
    return None


class _RealPaths:
    """`os.path.realpath` of absolute paths, with the real path of every folder on the way
    remembered: a metadata CSV names thousands of files in the same folders, and resolving
    each path from the top costs a system call per folder it passes through.

    Example:
        >>> _RealPaths()("/usr/./lib/../bin")
        '/usr/bin'
    """

    def __init__(self) -> None:
        self._known: dict[str, str] = {}  # a path whose folder is real -> its real path
        self._folders: dict[str, str] = {}  # a folder as written -> its real path

    def __call__(self, path: str) -> str:
        folder, _, name = path.rpartition("/")
        real_folder = self._folders.get(folder)
        if real_folder is None:
            real_folder = self._folders[folder] = self._walk(folder)
        return self._step(real_folder, name)

    def _walk(self, path: str) -> str:
        current = "/"
        for name in path.split("/"):
            current = self._step(current, name)
        return current

    def _step(self, real_folder: str, name: str) -> str:
        if name in ("", "."):
            return real_folder
        if name == "..":
            return os.path.dirname(real_folder)
        joined = os.path.join(real_folder, name)
        known = self._known.get(joined)
        if known is None:
            known = os.path.realpath(joined) if os.path.islink(joined) else joined
            self._known[joined] = known
        return known


def _inside(path: str, root: str) -> str | None:
    """`path` relative to `root` (both real and absolute), or None when it is outside."""
    if path == root:
        return "."
    prefix = root if root.endswith("/") else f"{root}/"
    return path[len(prefix) :] if path.startswith(prefix) else None
