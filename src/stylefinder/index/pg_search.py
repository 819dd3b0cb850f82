"""Nearest items of a PostgreSQL catalog by cosine similarity, with an optional SQL filter.

A query runs in one transaction. Where many items pass the filter (or there is none), it walks
the HNSW index with `hnsw.ef_search` and pgvector's iterative scan (`relaxed_order`), which
goes on scanning until k rows pass the filter; the rows are then sorted by their exact score.
With a filter, `hnsw.ef_search` grows as the share of items passing shrinks (see
`filtered_ef_search`). Where few pass (at most `EXACT_MAX_ROWS`, or under `EXACT_MAX_SHARE`
of the items and at most `NARROW_EXACT_MAX_ROWS`; counted once per generation and filter), it
scores those rows exactly instead: fast, and exact. The planner is told which way to go, since
it cannot estimate a JSONB filter's selectivity. Scores are cosine similarities computed from
the stored vectors, `1 - (embedding <=> query)`, best first.

Example:
    >>> hits = search(catalog, query_vector, 10)  # doctest: +SKIP
    >>> [(item.id, round(score, 3)) for item, score in hits[:2]]  # doctest: +SKIP
    [('dress-12', 0.912), ('dress-40', 0.887)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.index.pg_tables import ITEM_COLUMNS, item_from_row, read_generation
from stylefinder.types import Item

if TYPE_CHECKING:
    from psycopg import sql

    Where = tuple[sql.Composable, Any]

DEFAULT_EF_SEARCH = 100  # HNSW candidates kept per query (pgvector's default: 40)
# filters passing at most this many rows are scored exactly. Measured on 20,000 x 1280-d
# (benchmarks/postgres_backend.py, k=10, p50): 207 rows exactly 5.2 ms (recall 1.0) against
# 25 ms through the index (recall 0.95); 2,223 rows exactly 17 to 30 ms (1.0) against 9.1 ms
# (0.98); no filter: the index 4.3 ms (1.0) against 104 ms exactly. An exact scan costs 6 to
# 15 us a row (reading its vector) after the filter's GIN lookup; a filtered walk of the index
# grows as the share shrinks (and its recall falls).
EXACT_MAX_ROWS = 1_000
# ...and so are filters too narrow for the index (under EXACT_MAX_SHARE of the items pass), up
# to this many rows. On 100,000 items (benchmarks/results/postgres_backend_100000.json), 1,031
# rows (1%): the index at ef_search 1,000 45 ms p50, recall@10 0.893; exactly 5.8 ms, 1.0.
NARROW_EXACT_MAX_ROWS = 20_000
EXACT_MAX_SHARE = 0.04
# a filtered walk keeps ef_search candidates, of which the filter's share pass: it keeps enough
# for about this many to pass. 100,000 x 1280-d, 11% passing (benchmarks/pg_filtered_ef.py):
# recall@10 0.999 at ef_search 100 (5.5 ms), 1.0 at 200 (6.3 ms), 1.0 at 400 (12 ms)
FILTERED_CANDIDATES = 20
MAX_EF_SEARCH = 1_000  # pgvector's largest hnsw.ef_search
MAX_SCAN_TUPLES = 50_000  # iterative scans stop after visiting this many index tuples
_MATCH_COUNTS_KEPT = 256


@dataclass(frozen=True)
class VectorTable:
    """Vectors of the items kept in a table of their own (a tuned space): its name (psycopg
    SQL), its vector type and dimension; its rows are (item_id, tuned)."""

    table: Any
    vector_type: str
    dim: int


def search(
    catalog: PgCatalog,
    vector: np.ndarray,
    k: int,
    *,
    where: Where | None = None,
    exclude_ids: Iterable[str] = (),
    ef_search: int = DEFAULT_EF_SEARCH,
    exact: bool | None = None,
    space: VectorTable | None = None,
) -> list[tuple[Item, float]]:
    """The `k` items most similar to `vector` that pass `where` (a psycopg SQL clause over the
    items' columns, such as `metadata`, and its parameters) and are not in `exclude_ids`, as
    (item, cosine similarity), best first. `exact` forces (True) or forbids (False) the exact
    scan; by default it is chosen by how many rows the filter passes. With `space`, the
    vectors searched are that table's (a tuned space), joined to the items.

    Example:
        >>> from psycopg import sql
        >>> where = (sql.SQL("metadata @> %s::jsonb"), ['{"category": "Dress"}'])
        >>> search(catalog, query_vector, 5, where=where)[0][0].metadata  # doctest: +SKIP
        {'category': 'Dress', 'price': 49}
    """
    query_vector = np.asarray(vector, np.float32).reshape(-1)
    dim = space.dim if space is not None else catalog.header.dim
    if query_vector.shape != (dim,):
        raise ValueError(f"the query vector must have {dim} dims")
    if k <= 0:
        return []
    clause, params = _clause(where, sorted(set(exclude_ids)))
    ef_search = max(ef_search, k)
    with catalog.connection() as conn, conn.transaction():
        if where is not None and exact is not True:
            passing = count_matching(catalog, conn, *_clause(where, []))
            share = passing / max(1, count_matching(catalog, conn, None, []))
            exact = scan_exactly(passing, share) if exact is None else exact
            ef_search = filtered_ef_search(ef_search, share)
        elif exact is None:
            exact = count_matching(catalog, conn, None, []) <= EXACT_MAX_ROWS
        for setting in settings(exact=exact, ef_search=ef_search, filtered=clause is not None):
            conn.execute(setting)
        if space is not None and not exact:  # walk the space's index, then look items up
            conn.execute("SET LOCAL enable_hashjoin = off")
            conn.execute("SET LOCAL enable_mergejoin = off")
        query, query_params = _query(
            catalog, clause, params, query_vector, k, exact=exact, space=space
        )
        # never prepared: a prepared plan would keep the way (index or exact scan) of the
        # settings it was planned under
        rows = conn.cursor(binary=True).execute(query, query_params, prepare=False).fetchall()
    hits = [(item_from_row(row[:-1]), float(row[-1])) for row in rows]
    hits.sort(key=lambda hit: -hit[1])  # relaxed order: the index's order may be a little off
    return hits


def settings(
    *, exact: bool, ef_search: int = DEFAULT_EF_SEARCH, filtered: bool = False
) -> list[str]:
    """The `SET LOCAL` statements of a search: the HNSW index with an iterative scan, or for
    an exact scan (whose ORDER BY no vector index serves) of filtered rows, the GIN index on
    `metadata` where the filter can use it (a table scan where it cannot).

    Example:
        >>> settings(exact=True, filtered=True)
        ['SET LOCAL enable_seqscan = off']
    """
    if exact:
        return ["SET LOCAL enable_seqscan = off"] if filtered else []
    return [
        f"SET LOCAL hnsw.ef_search = {int(ef_search)}",
        "SET LOCAL hnsw.iterative_scan = relaxed_order",
        f"SET LOCAL hnsw.max_scan_tuples = {MAX_SCAN_TUPLES}",
        "SET LOCAL enable_seqscan = off",
        "SET LOCAL enable_bitmapscan = off",
    ]


def search_query(
    catalog: PgCatalog,
    vector: np.ndarray,
    k: int,
    *,
    where: Where | None = None,
    exclude_ids: Iterable[str] = (),
    exact: bool = False,
) -> tuple[sql.Composable, list]:
    """The SELECT `search` runs and its parameters (for EXPLAIN)."""
    clause, params = _clause(where, sorted(set(exclude_ids)))
    vector = np.asarray(vector, np.float32).reshape(-1)
    return _query(catalog, clause, params, vector, k, exact=exact)


def scan_exactly(passing: int, share: float) -> bool:
    """Whether a filter that `passing` rows (`share` of the items) pass is scored exactly:
    few rows, or a share too small for the index to find k of them.

    Example:
        >>> scan_exactly(800, 0.5), scan_exactly(1_031, 0.01), scan_exactly(11_000, 0.11)
        (True, True, False)
    """
    if passing <= EXACT_MAX_ROWS:
        return True
    return share < EXACT_MAX_SHARE and passing <= NARROW_EXACT_MAX_ROWS


def filtered_ef_search(ef_search: int, share: float) -> int:
    """The HNSW candidates to keep when `share` of the items pass the filter: enough that about
    `FILTERED_CANDIDATES` of them pass, at most pgvector's 1,000.

    Example:
        >>> filtered_ef_search(100, 0.5), filtered_ef_search(100, 0.11), filtered_ef_search(100, 0)
        (100, 182, 1000)
    """
    wanted = math.ceil(FILTERED_CANDIDATES / share) if share > 0 else MAX_EF_SEARCH
    return min(MAX_EF_SEARCH, max(ef_search, wanted))


def count_matching(catalog: PgCatalog, conn, clause, params: list) -> int:
    """How many items pass `clause` (None: all items), remembered per generation."""
    from psycopg import sql

    generation = read_generation(conn, catalog)
    text = None if clause is None else clause.as_string(conn)
    key = (generation, text, _hashable(params))
    counts = catalog.match_counts
    if key not in counts:
        where = sql.SQL("") if clause is None else sql.SQL("WHERE {}").format(clause)
        query = sql.SQL("SELECT count(*) FROM {} {}").format(catalog.sql("{items}"), where)
        if len(counts) >= _MATCH_COUNTS_KEPT:
            counts.clear()
        counts[key] = int(conn.execute(query, params).fetchone()[0])
    return counts[key]


def _clause(where: Where | None, excluded: list[str]) -> tuple[Any, list]:
    from psycopg import sql

    parts, params = [], []
    if where is not None:
        clause, where_params = where
        parts.append(sql.SQL("({})").format(clause))
        params.extend(_as_list(where_params))
    if excluded:
        parts.append(sql.SQL("NOT (id = ANY(%s))"))
        params.append(excluded)
    return (sql.SQL(" AND ").join(parts) if parts else None), params


def _query(
    catalog: PgCatalog,
    clause,
    params: list,
    vector,
    k: int,
    *,
    exact: bool,
    space: VectorTable | None = None,
):
    """The SELECT of a search: ordered by the distance operator, which the HNSW index serves,
    or (`exact`) by the score, which no index serves. With `space`, its table's vectors, each
    joined to its item."""
    from psycopg import sql

    kind = space.vector_type if space is not None else catalog.vector_type
    cast = sql.SQL(f"%s::vector::{kind}")
    source = catalog.sql("{items}")
    column = sql.SQL("embedding")
    if space is not None:
        source = sql.SQL("{} JOIN {} AS t ON t.item_id = id").format(source, space.table)
        column = sql.SQL("t.tuned")
    if exact:
        text = "SELECT {columns}, 1 - ({column} <=> {q}) AS score FROM {items} {where} "
        text += "ORDER BY score DESC LIMIT {k}"
        query_params = [vector, *params]
    else:
        text = "SELECT {columns}, 1 - ({column} <=> {q}) FROM {items} {where} "
        text += "ORDER BY {column} <=> {q} LIMIT {k}"
        query_params = [vector, *params, vector]
    query = sql.SQL(text).format(
        columns=sql.SQL(ITEM_COLUMNS),
        column=column,
        q=cast,
        items=source,
        where=sql.SQL("WHERE {}").format(clause) if clause is not None else sql.SQL(""),
        k=sql.Literal(int(k)),
    )
    return query, query_params


def _as_list(params: Any) -> list:
    if params is None:
        return []
    if isinstance(params, dict):
        raise TypeError("a search's `where` takes positional parameters (%s), not named ones")
    return list(params)


def _hashable(params: list) -> tuple:
    return tuple(tuple(p) if isinstance(p, list) else p for p in params)
