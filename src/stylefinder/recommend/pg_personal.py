"""Personal recommendations over a PostgreSQL catalog: the same ranking as on a directory
(`recommend.personal.rank`), over candidates the database finds.

On a directory, `rank` scores the whole matrix. Here no replica holds it: the shopper's items
and their interest centres (`personal.interests`) come from the database, each centre's
nearest items that pass the filters are found by pgvector (`index.pg_search`), and `rank`
runs over those candidates and the shopper's own items. Where the search is exact (small
catalogs, selective filters) the candidates are the ones `rank` would pick from the whole
matrix, so the results are the directory's. The cold start takes the most popular items that
pass the filters, topped up with items spread over the catalog's id order.

Example:
    >>> [r.id for r in pg_for_shopper(view, events, "u-1", k=3)]  # doctest: +SKIP
    ['dress-40', 'dress-7', 'coat-3']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stylefinder.index.pg_reads import passing_ids
from stylefinder.index.pg_search import search
from stylefinder.recommend.filters import Filters
from stylefinder.recommend.personal import (
    COLD_POOL,
    Profile,
    ProfileSettings,
    build_profile,
    interests,
    popularity_vector,
    rank,
)
from stylefinder.recommend.pg_filters import filter_clause
from stylefinder.recommend.pg_view import PgCatalogView
from stylefinder.recommend.view import Recommendation
from stylefinder.shoppers.base import EventStore


def pg_for_shopper(
    view: PgCatalogView,
    events: EventStore,
    user_id: str,
    k: int = 10,
    *,
    filters: Filters | None = None,
    diversity: float | None = None,
    settings: ProfileSettings | None = None,
    now: float | None = None,
) -> list[Recommendation]:
    """`for_shoppers.for_shopper` on a PostgreSQL catalog (same arguments, checked there;
    same scores).

    Example:
        >>> pg_for_shopper(view, events, "u-1", k=3, diversity=0.0)  # doctest: +SKIP
    """
    settings = settings or ProfileSettings()
    history = events.events(user_id)
    own = sorted({event.item_id for event in history} & view.known_items)
    profile = build_profile(history, {i: n for n, i in enumerate(own)}, settings=settings, now=now)
    popularity = events.item_counts() if profile.cold else None
    return _ranked(view, own, profile, k, filters, diversity, settings, popularity)


def pg_from_examples(
    view: PgCatalogView,
    positive: Sequence[str],
    negative: Sequence[str] = (),
    k: int = 10,
    *,
    filters: Filters | None = None,
    diversity: float | None = None,
    settings: ProfileSettings | None = None,
) -> list[Recommendation]:
    """`for_shoppers.from_examples` on a PostgreSQL catalog (examples as lists, checked there).

    Example:
        >>> pg_from_examples(view, ["dress-12"], ["coat-3"], k=5)  # doctest: +SKIP
    """
    for item_id in [*positive, *negative]:
        view.item(item_id)  # UnknownItemError names it
    own = list(dict.fromkeys([*positive, *negative]))
    row = {item_id: n for n, item_id in enumerate(own)}
    profile = Profile.from_examples([row[i] for i in positive], [row[i] for i in negative])
    settings = settings or ProfileSettings()
    return _ranked(view, own, profile, k, filters, diversity, settings, None)


def _ranked(
    view: PgCatalogView,
    own: list[str],
    profile: Profile,
    k: int,
    filters: Filters | None,
    diversity: float | None,
    settings: ProfileSettings,
    counts: dict | None,
) -> list[Recommendation]:
    catalog = view.store
    where = filter_clause(catalog, filters) if filters else None
    own_vectors = catalog.vectors_of(own)
    excluded = [own[row] for row in profile.excluded_rows]
    if profile.cold:
        candidates = _cold_candidates(view, where, counts or {}, settings)
    else:
        per_centre = max(settings.candidates_per_interest, 3 * k)
        candidates = []
        for centre in interests(own_vectors, profile, settings.max_interests):
            hits = search(catalog, centre, per_centre, where=where, exclude_ids=excluded)
            candidates += [item.id for item, _ in hits]
    ids = list(dict.fromkeys([*own, *candidates]))
    matrix = np.concatenate([own_vectors, catalog.vectors_of(ids[len(own) :])])
    allowed = np.isin(np.array(ids, dtype=object), np.array(candidates, dtype=object))
    popularity = None
    if counts is not None:
        popularity = popularity_vector(counts, {i: n for n, i in enumerate(ids)}, len(ids))
    rows, scores = rank(
        matrix,
        profile,
        k,
        allowed=allowed,
        popularity=popularity,
        diversity=diversity,
        settings=settings,
    )
    items = catalog.items([ids[row] for row in rows])
    return [
        Recommendation(item.id, view.image_path(item), round(float(score), 6), dict(item.metadata))
        for item, score in zip(items, scores, strict=True)
    ]


def _cold_candidates(view, where, counts: dict, settings: ProfileSettings) -> list[str]:
    """The most popular items that pass `where`, topped up with items spread over the rest."""
    passing = passing_ids(view.store, where=where)
    weights = settings.kind_weights
    score = {
        item_id: sum(n * max(0.0, weights.get(kind, 0.0)) for kind, n in kinds.items())
        for item_id, kinds in counts.items()
    }
    popular = sorted((i for i in passing if score.get(i, 0) > 0), key=lambda i: (-score[i], i))
    popular = popular[:COLD_POOL]
    chosen = set(popular)
    rest = [item_id for item_id in passing if item_id not in chosen]
    spare = min(COLD_POOL - len(popular), len(rest))
    if spare <= 0:
        return popular
    spread = np.unique(np.linspace(0, len(rest) - 1, spare).round().astype(np.int64))
    return popular + [rest[n] for n in spread]
