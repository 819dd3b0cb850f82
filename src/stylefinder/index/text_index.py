"""Full-text search over the items' words in an index directory: an SQLite FTS5 table with
BM25 ranking, kept by triggers on the manifest's `items` table.

Every text value of an item's metadata is searched (title, description, brand, category,
colours, tags, the recognized `category_pred`; lists too); numbers and links are not. The
triggers write the table in the same transaction as the items, so every writer (indexing, the
API's uploads, a restore) keeps it current, and a manifest made before it gets it filled on
upgrade. Words are stemmed (Porter) and folded (case, accents): "shirts" finds "Shirt".

Example:
    >>> import sqlite3
    >>> con = sqlite3.connect(":memory:")
    >>> _ = con.execute("CREATE TABLE items (id TEXT PRIMARY KEY, row INTEGER, metadata TEXT)")
    >>> create_text_index(con)
    >>> title = '{"title": "Navy linen shirts"}'
    >>> _ = con.execute("INSERT INTO items VALUES ('a', 0, ?)", (title,))
    >>> match_rows(con, '"shirt"', size=1, limit=5)
    [(0, 1.0)]
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence

TABLE = "item_words"
# the words of one item: every text leaf of its metadata that is not a link
_WORDS = (
    "(SELECT coalesce(group_concat(value, ' '), '') FROM json_tree({row}.metadata) "
    "WHERE type = 'text' AND value NOT LIKE '%://%')"
)
_FILL = f"INSERT INTO {TABLE} (rowid, words) VALUES (NEW.rowid, {_WORDS.format(row='NEW')});"
TOKENIZER = "'porter unicode61 remove_diacritics 2'"  # stemmed, case and accents folded
STATEMENTS = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(words, tokenize = {TOKENIZER})",
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_insert AFTER INSERT ON items BEGIN "
    f"DELETE FROM {TABLE} WHERE rowid = NEW.rowid; {_FILL} END",
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_delete AFTER DELETE ON items BEGIN "
    f"DELETE FROM {TABLE} WHERE rowid = OLD.rowid; END",
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_update AFTER UPDATE OF metadata ON items BEGIN "
    f"DELETE FROM {TABLE} WHERE rowid = OLD.rowid; {_FILL} END",
)


def create_text_index(con: sqlite3.Connection) -> None:
    """Make the words table and its triggers, filled from the items already there (a manifest
    made before full-text search), in the caller's transaction if it has one. Raises
    `RuntimeError` when this SQLite lacks FTS5.

    Example:
        >>> create_text_index(con)  # doctest: +SKIP
    """
    if has_text_index(con):
        return
    try:
        for statement in STATEMENTS:  # one by one: inside the caller's transaction
            con.execute(statement)
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc):
            raise RuntimeError(f"this Python's SQLite has no FTS5 ({exc})") from exc
        raise
    con.execute(
        f"INSERT INTO {TABLE} (rowid, words) SELECT rowid, {_WORDS.format(row='items')} FROM items"
    )


def has_text_index(con: sqlite3.Connection) -> bool:
    """Whether the manifest has the words table."""
    found = con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone()
    return found is not None


def match_rows(
    con: sqlite3.Connection, expression: str, *, size: int, limit: int
) -> list[tuple[int, float]]:
    """The matrix rows (below `size`) of the items whose words match the FTS5 `expression`,
    best first, at most `limit`, with BM25 relevance scaled so the best is 1.0.

    Ranked in the words table alone (the items are looked up for the rows returned only).

    Example:
        >>> match_rows(con, '"navy" OR "shirt"', size=1000, limit=10)  # doctest: +SKIP
        [(12, 1.0), (40, 0.61)]
    """
    ranked = con.execute(
        f"SELECT rowid, rank FROM {TABLE} WHERE {TABLE} MATCH ? ORDER BY rank LIMIT ?",
        (expression, limit),
    ).fetchall()
    found = _rows_of(con, ranked, size)
    if not found:
        return []
    best = -found[0][1] or 1.0  # bm25 is negative, lower is better
    return [(int(row), round(-rank / best, 6)) for row, rank in found]


def rows_matching(
    con: sqlite3.Connection, expressions: Sequence[str], rows: Sequence[int]
) -> list[set[int]]:
    """For each FTS5 expression, which of the matrix `rows` hold items whose words match it:
    the rows' words are matched in a throwaway in-memory table of their own (the same
    tokenizer), so a common word costs nothing more than a rare one.

    Example:
        >>> rows_matching(con, ['"red"', '"red" OR "dress"'], [3, 12, 40])  # doctest: +SKIP
        [{12}, {3, 12}]
    """
    docs: list[tuple[int, str]] = []
    for start in range(0, len(rows), 900):
        part = [int(row) for row in rows[start : start + 900]]
        marks = ",".join("?" * len(part))
        docs += con.execute(
            f"SELECT items.row, {TABLE}.words FROM items JOIN {TABLE} "
            f"ON {TABLE}.rowid = items.rowid WHERE items.row IN ({marks})",
            part,
        ).fetchall()
    with contextlib.closing(sqlite3.connect(":memory:")) as scratch:
        scratch.execute(f"CREATE VIRTUAL TABLE found USING fts5(words, tokenize = {TOKENIZER})")
        scratch.executemany("INSERT INTO found (rowid, words) VALUES (?, ?)", docs)
        query = "SELECT rowid FROM found WHERE found MATCH ?"
        return [{row for (row,) in scratch.execute(query, (e,))} for e in expressions]


def _rows_of(con: sqlite3.Connection, ranked: list, size: int) -> list[tuple[int, float]]:
    """(matrix row, rank) of ranked (rowid, rank) pairs, in order, rows below `size` only."""
    row_of: dict[int, int] = {}
    for start in range(0, len(ranked), 900):
        part = [rowid for rowid, _ in ranked[start : start + 900]]
        marks = ",".join("?" * len(part))
        query = f"SELECT rowid, row FROM items WHERE rowid IN ({marks}) AND row < ?"
        row_of.update(con.execute(query, (*part, size)).fetchall())
    return [(row_of[rowid], rank) for rowid, rank in ranked if rowid in row_of]
