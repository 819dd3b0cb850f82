"""Personal recommendations over one catalog view: for a shopper's events, or for examples.

The ranking itself is `stylefinder.recommend.personal`; this module feeds it a view's searched
matrix, its live or filtered rows and the shoppers' events.

Example:
    >>> [r.id for r in for_shopper(view, events, "u-1", k=3)]  # doctest: +SKIP
    ['dress-40', 'dress-7', 'coat-3']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stylefinder.recommend.filters import Filters
from stylefinder.recommend.personal import (
    Profile,
    ProfileSettings,
    build_profile,
    check_diversity,
    popularity_vector,
    rank,
)
from stylefinder.recommend.view import CatalogView, Recommendation
from stylefinder.shoppers.base import EventStore


def check_k(k: int) -> None:
    """Refuse a `k` that is not a positive integer.

    Example:
        >>> check_k(5)
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def for_shopper(
    view: CatalogView,
    events: EventStore,
    user_id: str,
    k: int = 10,
    *,
    filters: Filters | None = None,
    diversity: float | None = None,
    settings: ProfileSettings | None = None,
    now: float | None = None,
) -> list[Recommendation]:
    """The `k` items to show shopper `user_id`, from their events: near what they liked,
    bought or carted (recent events count more), away from what they disliked, never what they
    bought or disliked, spread out by MMR (`diversity` in [0, 1]; None: 0.3, or 0.5 for the cold
    start). A shopper with no positive events gets popular, varied items.

    `score` is the ranking score: MMR's objective, (1 - diversity) x relevance - diversity x
    similarity to the closest item above it (the relevance itself with diversity 0); it never
    increases down the list and stays within [-1, 1].

    Example:
        >>> for_shopper(view, events, "u-1", k=3, diversity=0.0)  # doctest: +SKIP
    """
    check_k(k)
    if diversity is not None:
        check_diversity(diversity)
    settings = settings or ProfileSettings()
    if not isinstance(view, CatalogView):  # a PostgreSQL catalog's: candidates from there
        from stylefinder.recommend.pg_personal import pg_for_shopper

        options = {"filters": filters, "diversity": diversity, "now": now}
        return pg_for_shopper(view, events, user_id, k, settings=settings, **options)
    snapshot = view.snapshot
    profile = build_profile(events.events(user_id), snapshot.row_of, settings=settings, now=now)
    popularity = None
    if profile.cold:
        counts = events.item_counts()
        popularity = popularity_vector(counts, snapshot.row_of, snapshot.size, settings=settings)
    return _ranked(view, profile, k, filters, diversity, settings, popularity)


def from_examples(
    view: CatalogView,
    positive: Sequence[str],
    negative: Sequence[str] = (),
    k: int = 10,
    *,
    filters: Filters | None = None,
    diversity: float | None = None,
    settings: ProfileSettings | None = None,
) -> list[Recommendation]:
    """More like the `positive` items, not like the `negative` ones, without the examples.

    Example:
        >>> from_examples(view, ["dress-12"], ["coat-3"], k=5)  # doctest: +SKIP
    """
    check_k(k)
    if diversity is not None:
        check_diversity(diversity)
    positive = [positive] if isinstance(positive, str) else list(positive)
    negative = [negative] if isinstance(negative, str) else list(negative)
    if not positive:
        raise ValueError("give at least one positive example")
    if not isinstance(view, CatalogView):  # a PostgreSQL catalog's: candidates from there
        from stylefinder.recommend.pg_personal import pg_from_examples

        options = {"filters": filters, "diversity": diversity, "settings": settings}
        return pg_from_examples(view, positive, negative, k, **options)
    rows = [view.row(item_id) for item_id in [*positive, *negative]]
    profile = Profile.from_examples(rows[: len(positive)], rows[len(positive) :])
    settings = settings or ProfileSettings()
    return _ranked(view, profile, k, filters, diversity, settings, None)


def _ranked(
    view: CatalogView,
    profile: Profile,
    k: int,
    filters: Filters | None,
    diversity: float | None,
    settings: ProfileSettings,
    popularity: np.ndarray | None,
) -> list[Recommendation]:
    rows, scores = rank(
        view.matrix,
        profile,
        k,
        allowed=view.live_or_allowed(filters),
        popularity=popularity,
        diversity=diversity,
        settings=settings,
    )
    return view.results(rows, scores)
