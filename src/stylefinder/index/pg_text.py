"""Full-text search over a PostgreSQL catalog's items: the `words` column (a tsvector of every
string in the item's metadata, English stemming; migration 5) with its GIN index, ranked by
`ts_rank`.

Example:
    >>> text_matches(catalog, "navy | linen | shirt", 10)  # doctest: +SKIP
    [('shirt-12', 1.0), ('shirt-40', 0.5)]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stylefinder.index.pg_catalog import PgCatalog


def text_matches(
    catalog: PgCatalog,
    tsquery: str,
    limit: int,
    *,
    where: tuple[Any, list] | None = None,
) -> list[tuple[str, float]]:
    """The ids of the items whose words match `tsquery` (`to_tsquery` text) and pass `where`
    (a psycopg SQL clause and its parameters), best first, at most `limit`, with their rank
    scaled so the best is 1.0.

    Example:
        >>> text_matches(catalog, "red", 5, where=filter_clause(catalog, {"price": "<50"}))
        ... # doctest: +SKIP
        [('dress-3', 1.0)]
    """
    from psycopg import sql

    clause, params = where if where is not None else (sql.SQL("true"), [])
    query = sql.SQL(
        "SELECT id, ts_rank(words, query) AS rank "
        "FROM {items}, to_tsquery('english', %s) AS query "
        "WHERE words @@ query AND {clause} ORDER BY rank DESC, id LIMIT %s"
    ).format(items=catalog.sql("{items}"), clause=clause)
    with catalog.connection() as conn:
        found = conn.execute(query, [tsquery, *params, int(limit)]).fetchall()
    if not found:
        return []
    best = float(found[0][1]) or 1.0
    return [(item_id, round(float(rank) / best, 6)) for item_id, rank in found]


def ids_matching(catalog: PgCatalog, tsquery: str, ids: list[str]) -> set[str]:
    """Which of `ids` name items whose words match `tsquery`.

    Example:
        >>> ids_matching(catalog, "red", ["dress-3", "coat-1"])  # doctest: +SKIP
        {'dress-3'}
    """
    query = catalog.sql(
        "SELECT id FROM {items} WHERE id = ANY(%s) AND words @@ to_tsquery('english', %s)"
    )
    with catalog.connection() as conn:
        return {row[0] for row in conn.execute(query, [ids, tsquery])}
