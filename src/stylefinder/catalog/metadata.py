"""Join catalog images with a CSV of metadata (category, colour, price, ...).

A CSV row finds its image by a `path` column (relative to the catalog folder), or by an `id`
column that equals the image's file name without extension (the Kaggle "Fashion Product Images"
`styles.csv` layout, where item 15970 is `images/15970.jpg`) or its relative path. Malformed rows
are reported with their line number and skipped; they never stop the run.

Example:
    >>> table = read_metadata_csv("catalog.csv", "shop-photos")  # doctest: +SKIP
    >>> table.problems  # doctest: +SKIP
    ['catalog.csv line 7: 4 fields, the header has 3']
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from stylefinder.catalog.scan import CatalogFile

ID_COLUMNS = ("id",)
PATH_COLUMNS = ("path", "file", "filename", "image", "image_path")


@dataclass(frozen=True)
class Row:
    """One good CSV row: its line number, id (if the CSV has ids) and metadata columns."""

    line: int
    item_id: str | None
    metadata: dict[str, str]


@dataclass
class MetadataTable:
    """Parsed CSV rows, keyed for matching, plus the problems found while reading."""

    by_id: dict[str, Row] = field(default_factory=dict)
    by_path: dict[str, Row] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    good_rows: int = 0


@dataclass(frozen=True)
class CatalogEntry:
    """An image file with its item id and metadata, ready to be indexed."""

    item_id: str
    file: CatalogFile
    metadata: dict[str, str]


def read_metadata_csv(csv_path: str | Path, catalog_root: str | Path) -> MetadataTable:
    """Read a metadata CSV; see the module docstring for how rows are matched to images."""
    csv_path = Path(csv_path)
    root = Path(catalog_root).resolve()
    table = MetadataTable()
    where = csv_path.name
    if not csv_path.is_file():
        raise FileNotFoundError(f"metadata CSV {csv_path} does not exist")
    with open(csv_path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            table.problems.append(f"{where}: empty file, no header row")
            return table
        except csv.Error as exc:
            table.problems.append(f"{where}: unreadable header ({exc})")
            return table
        lower = [name.lower() for name in header]
        id_col = next((lower.index(c) for c in ID_COLUMNS if c in lower), None)
        path_col = next((lower.index(c) for c in PATH_COLUMNS if c in lower), None)
        if id_col is None and path_col is None:
            table.problems.append(
                f"{where}: no 'id' or 'path' column in header {header}; metadata ignored"
            )
            return table
        if len(set(lower)) != len(lower):
            table.problems.append(f"{where}: repeated column names in header {header}")
            return table
        csv_dir = csv_path.resolve().parent
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                table.problems.append(
                    f"{where} line {reader.line_num}: unreadable ({exc}); stopped"
                )
                break
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue  # blank line
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
            metadata = {
                name: value
                for index, (name, value) in enumerate(row.items())
                if index not in (id_col, path_col) and value != ""
            }
            parsed = Row(line, item_id, metadata)
            if path_col is not None:
                relpath = _normalize(values[path_col], root, csv_dir)
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
    return table


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


def _normalize(raw: str, root: Path, csv_dir: Path) -> str | None:
    text = raw.strip().replace("\\", "/")
    if not text:
        return None
    candidate = Path(text)
    options = [candidate] if candidate.is_absolute() else [root / candidate, csv_dir / candidate]
    for option in options:
        resolved = Path(*option.parts).resolve()
        try:
            relative = resolved.relative_to(root).as_posix()
        except ValueError:
            continue
        if option is options[-1] or resolved.exists():
            return relative
    return None
