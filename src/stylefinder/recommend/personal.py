"""Personal recommendations: what a shopper did -> a profile -> candidates -> a diverse top k.

Pure functions over the searched matrix (unit vectors, one row per item) and events:

1. `build_profile` weighs each event by its kind (a purchase counts more than a view, a dislike
   counts against) and by its age (it halves every `half_life_days`), sums them per item, and
   splits the items into positives and negatives. Items bought or disliked are excluded from the
   results, and by default so is everything the shopper already interacted with.
2. `interests` finds up to `max_interests` centres among the positives (farthest-point seeds,
   then weighted means), so a shopper who likes dresses and sneakers has one centre for each
   instead of one mean vector between them; `candidate_rows` searches the index around each.
3. `score_rows` scores each candidate by a kernel over the positive items minus one over the
   negatives: sum_p w_p exp((cos(x, p) - 1) / T) - sum_n w_n exp((cos(x, n) - 1) / T), divided
   by the positive weight. Nearness to any liked item counts, whichever interest it belongs to.
4. `mmr` re-ranks with maximal marginal relevance: `diversity` 0 keeps the relevance order,
   1 only spreads the results out. A result's score is the MMR objective it was picked with, so
   scores never increase down the list and stay within [-1, 1].

A shopper without positive events gets the cold start: popular items (event counts over all
shoppers), or evenly spread catalog items when nothing is popular yet, ranked with more
diversity and still pushed away from their dislikes.

Example:
    >>> import numpy as np
    >>> matrix = np.array([[1, 0], [0.95, 0.31], [0, 1], [0.31, 0.95]], np.float32)
    >>> profile = Profile.from_examples([0])
    >>> rows, scores = rank(matrix, profile, k=2, diversity=0.0)
    >>> rows.tolist()
    [1, 3]
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from stylefinder.index.search import top_k

#: How much one event of each kind counts; negative kinds push away.
KIND_WEIGHTS: dict[str, float] = {
    "purchase": 3.0,
    "add_to_cart": 2.0,
    "like": 1.5,
    "view": 0.3,
    "dislike": -1.5,
}
_DAY_S = 86_400.0
COLD_POOL = 500  # cold-start candidates: the most popular items, topped up with spread ones
_BLOCK_ROWS = 262_144  # rows scored per step when finding candidates
_TYPICALITY = 0.1  # cold start: weight of "close to the middle of the pool", breaks popularity ties


class EventLike(Protocol):
    """What the profile reads from an event (`stylefinder.shoppers.base.Event` has it)."""

    item_id: str
    kind: str
    timestamp: float
    weight: float


@dataclass(frozen=True)
class ProfileSettings:
    """How events become a profile and a ranking.

    Example:
        >>> ProfileSettings(half_life_days=7, kind_weights={**KIND_WEIGHTS, "view": 0.0})
        ... # doctest: +ELLIPSIS
        ProfileSettings(kind_weights={...}, half_life_days=7, ...)
    """

    kind_weights: Mapping[str, float] = field(default_factory=lambda: dict(KIND_WEIGHTS))
    half_life_days: float | None = 30.0  # None: old events count as much as new ones
    temperature: float = 0.1  # kernel width in cosine units: smaller = only near items count
    max_interests: int = 4  # centres searched around (clusters of liked items)
    candidates_per_interest: int = 200
    exclude_seen: bool = True  # also leave out items viewed, liked or carted before
    diversity: float = 0.3  # MMR weight for shoppers with a profile; 0-0.4 keeps them on taste
    cold_start_diversity: float = 0.5  # MMR weight for the cold start

    def __post_init__(self) -> None:
        unknown = set(self.kind_weights) - set(KIND_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown event kind(s) in kind_weights: {', '.join(sorted(unknown))}")
        if not all(math.isfinite(float(w)) for w in self.kind_weights.values()):
            raise ValueError("kind_weights must be finite numbers")
        if self.half_life_days is not None and not self.half_life_days > 0:
            raise ValueError("half_life_days must be positive (or None for no decay)")
        if not self.temperature > 0:
            raise ValueError("temperature must be positive")
        if self.max_interests < 1 or self.candidates_per_interest < 1:
            raise ValueError("max_interests and candidates_per_interest must be at least 1")
        check_diversity(self.diversity)
        check_diversity(self.cold_start_diversity)

    def decay(self, age_s: float) -> float:
        """The factor an event of age `age_s` seconds is weighed with (1 when new).

        Example:
            >>> ProfileSettings(half_life_days=10).decay(10 * 86_400)
            0.5
        """
        if self.half_life_days is None:
            return 1.0
        return 0.5 ** (max(0.0, age_s) / _DAY_S / self.half_life_days)


@dataclass(frozen=True)
class Profile:
    """A shopper's taste as rows of the matrix: positives and negatives with their weights
    (both > 0), and rows never to recommend."""

    positive_rows: np.ndarray
    positive_weights: np.ndarray
    negative_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    negative_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    excluded_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def cold(self) -> bool:
        """True when nothing positive is known: the cold start applies."""
        return len(self.positive_rows) == 0

    @classmethod
    def from_examples(cls, positive: Sequence[int], negative: Sequence[int] = ()) -> Profile:
        """Examples as a profile, "more like these, not like those": equal weights, and the
        examples are excluded.

        Example:
            >>> Profile.from_examples([3, 5], [7]).excluded_rows.tolist()
            [3, 5, 7]
        """
        pos = np.unique(np.asarray(positive, np.int64))
        neg = np.setdiff1d(np.asarray(negative, np.int64), pos)
        return cls(pos, np.ones(len(pos)), neg, np.ones(len(neg)), np.union1d(pos, neg))


def check_diversity(diversity: float) -> float:
    """`diversity` if it is a number in [0, 1], else `ValueError`."""
    if isinstance(diversity, bool) or not isinstance(diversity, (int, float)):
        raise ValueError(f"diversity must be a number in [0, 1], got {diversity!r}")
    if not 0.0 <= float(diversity) <= 1.0:
        raise ValueError(f"diversity must be in [0, 1], got {diversity!r}")
    return float(diversity)


def build_profile(
    events: Iterable[EventLike],
    row_of: Mapping[str, int],
    *,
    settings: ProfileSettings | None = None,
    now: float | None = None,
) -> Profile:
    """The profile of one shopper's events. Events of items not in `row_of` are ignored.

    An item's weight is the sum of kind weight x event weight x recency decay over its events;
    items with a positive sum are positives, a negative sum negatives. Items bought, and items
    whose latest like/dislike is a dislike, are excluded (and never positive); with
    `settings.exclude_seen` every item with an event is excluded.

    Example:
        >>> from stylefinder.shoppers.base import Event
        >>> events = [Event("u", "a", "like", 0.0), Event("u", "b", "dislike", 0.0)]
        >>> p = build_profile(events, {"a": 0, "b": 1}, now=0.0)
        >>> p.positive_rows.tolist(), p.negative_rows.tolist(), p.excluded_rows.tolist()
        ([0], [1], [0, 1])
    """
    settings = settings or ProfileSettings()
    now = time.time() if now is None else now
    weights = settings.kind_weights
    net: dict[int, float] = {}
    bought: set[int] = set()
    feedback: dict[int, tuple[float, int, str]] = {}  # latest like or dislike of each row
    for order, event in enumerate(events):
        row = row_of.get(event.item_id)
        if row is None:
            continue
        value = weights.get(event.kind, 0.0) * event.weight * settings.decay(now - event.timestamp)
        net[row] = net.get(row, 0.0) + value
        if event.kind == "purchase":
            bought.add(row)
        if event.kind in ("like", "dislike"):
            key = (event.timestamp, order, event.kind)
            if row not in feedback or key[:2] >= feedback[row][:2]:
                feedback[row] = key
    disliked = {row for row, (_, _, kind) in feedback.items() if kind == "dislike"}
    positive = sorted(row for row, w in net.items() if w > 0 and row not in disliked)
    negative = sorted(row for row, w in net.items() if w < 0)
    excluded = set(net) if settings.exclude_seen else bought | disliked
    return Profile(
        np.array(positive, np.int64),
        np.array([net[r] for r in positive], np.float64),
        np.array(negative, np.int64),
        np.array([-net[r] for r in negative], np.float64),
        np.array(sorted(excluded | bought | disliked), np.int64),
    )


def popularity_vector(
    counts: Mapping[str, Mapping[str, int]],
    row_of: Mapping[str, int],
    size: int,
    *,
    settings: ProfileSettings | None = None,
) -> np.ndarray:
    """Per-row popularity: event counts of each item weighted by the positive kind weights.

    Example:
        >>> popularity_vector({"a": {"purchase": 2, "dislike": 5}}, {"a": 1}, 3).tolist()
        [0.0, 6.0, 0.0]
    """
    weights = (settings or ProfileSettings()).kind_weights
    out = np.zeros(size, np.float64)
    for item_id, kinds in counts.items():
        row = row_of.get(item_id)
        if row is not None:
            out[row] = sum(n * max(0.0, weights.get(kind, 0.0)) for kind, n in kinds.items())
    return out


def interests(matrix: np.ndarray, profile: Profile, max_interests: int = 4) -> np.ndarray:
    """Up to `max_interests` unit centres of the positive items (M, D).

    Seeds are chosen farthest-first starting from the heaviest positive; each positive joins
    its most similar seed, and a centre is the weighted mean of its members.

    Example:
        >>> m = np.array([[1, 0], [0.99, 0.14], [0, 1]], np.float32)
        >>> interests(m, Profile.from_examples([0, 1, 2]), 2).astype(float).round(2).tolist()
        [[1.0, 0.07], [0.0, 1.0]]
    """
    vectors = np.asarray(matrix[profile.positive_rows], np.float32)
    weights = profile.positive_weights
    if len(vectors) == 0:
        return np.zeros((0, matrix.shape[1]), np.float32)
    seeds = [int(np.argmax(weights))]
    closest = vectors @ vectors[seeds[0]]
    while len(seeds) < min(max_interests, len(vectors)):
        far = int(np.argmin(closest))
        if closest[far] > 0.999:  # the rest coincide with a seed
            break
        seeds.append(far)
        np.maximum(closest, vectors @ vectors[far], out=closest)
    member_of = np.argmax(vectors @ vectors[seeds].T, axis=1)
    centres = np.zeros((len(seeds), vectors.shape[1]), np.float64)
    np.add.at(centres, member_of, vectors * weights[:, None])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    return centres.astype(np.float32)


def candidate_rows(
    matrix: np.ndarray, queries: np.ndarray, per_query: int, blocked: np.ndarray | None = None
) -> np.ndarray:
    """The union of the `per_query` nearest unblocked rows of each query, sorted.

    All queries are scored in one pass over the matrix (in blocks, so a memory-mapped matrix
    streams through memory once however many interests there are).

    Example:
        >>> m = np.eye(3, dtype=np.float32)
        >>> candidate_rows(m, m[[0, 2]], 1).tolist()
        [0, 2]
    """
    queries = np.asarray(queries, np.float32).reshape(-1, matrix.shape[1])
    eligible = len(matrix) - (0 if blocked is None else int(np.count_nonzero(blocked)))
    per_query = min(per_query, eligible)
    if len(queries) == 0 or per_query <= 0:
        return np.zeros(0, np.int64)
    if len(queries) == 1:
        return np.sort(top_k(matrix, queries[0], per_query, exclude=blocked)[0])
    best_rows = np.zeros((0, len(queries)), np.int64)
    best_scores = np.zeros((0, len(queries)), np.float32)
    for start in range(0, len(matrix), _BLOCK_ROWS):
        scores = np.asarray(matrix[start : start + _BLOCK_ROWS] @ queries.T, np.float32)
        if blocked is not None:
            scores[blocked[start : start + len(scores)]] = -np.inf
        rows = np.broadcast_to(np.arange(start, start + len(scores))[:, None], scores.shape)
        best_rows = np.concatenate([best_rows, rows])
        best_scores = np.concatenate([best_scores, scores])
        if len(best_scores) > per_query:
            keep = np.argpartition(-best_scores, per_query - 1, axis=0)[:per_query]
            best_rows = np.take_along_axis(best_rows, keep, axis=0)
            best_scores = np.take_along_axis(best_scores, keep, axis=0)
    return np.unique(best_rows[np.isfinite(best_scores)])


def score_rows(
    matrix: np.ndarray, rows: np.ndarray, profile: Profile, temperature: float = 0.1
) -> np.ndarray:
    """Relevance of `rows` in cosine units: a soft maximum of the similarity to the positives,
    lowered by closeness to the negatives.

    With K = sum_p w_p exp((cos(x, p) - 1) / T) - sum_n w_n exp((cos(x, n) - 1) / T), divided
    by the positive weight, relevance = 1 + T log K (at least -1). With one positive and no
    negatives it is the cosine similarity itself, so it compares with the similarities MMR
    penalizes.

    Example:
        >>> m = np.array([[1, 0], [0, 1], [0.8, 0.6]], np.float32)
        >>> score_rows(m, np.array([2]), Profile.from_examples([0]), 0.1).round(3).tolist()
        [0.8]
        >>> score_rows(m, np.array([2]), Profile.from_examples([0], [1]), 0.1).round(3).tolist()
        [0.785]
    """
    kernel = kernel_scores(matrix, rows, profile, temperature)
    floor = np.exp(-2.0 / temperature)  # relevance -1, the least cosine similarity
    return 1.0 + temperature * np.log(np.maximum(kernel, floor))


def kernel_scores(
    matrix: np.ndarray, rows: np.ndarray, profile: Profile, temperature: float = 0.1
) -> np.ndarray:
    """K of `score_rows`: kernel closeness to the positives minus closeness to the negatives,
    divided by the total positive weight (or the negative weight when there are no positives).

    Example:
        >>> m = np.array([[1, 0], [0, 1], [0.8, 0.6]], np.float32)
        >>> kernel_scores(m, np.array([2]), Profile.from_examples([0], [1]), 0.1).round(3).tolist()
        [0.117]
    """
    vectors = np.asarray(matrix[rows], np.float32)
    scores = np.zeros(len(rows), np.float64)
    total = profile.positive_weights.sum() or profile.negative_weights.sum() or 1.0
    for group, weights, sign in (
        (profile.positive_rows, profile.positive_weights, 1.0),
        (profile.negative_rows, profile.negative_weights, -1.0),
    ):
        if len(group):
            similarity = vectors @ np.asarray(matrix[group], np.float32).T
            scores += sign * (np.exp((similarity - 1.0) / temperature) @ weights)
    return scores / total


def mmr(
    matrix: np.ndarray, rows: np.ndarray, relevance: np.ndarray, k: int, diversity: float
) -> tuple[np.ndarray, np.ndarray]:
    """Maximal marginal relevance: repeatedly take the row maximizing
    (1 - diversity) x relevance - diversity x (cosine similarity to the closest row taken,
    counted from 0: rows pointing away are not preferred to unrelated ones). Relevance should
    be in cosine units (as `score_rows` gives; it is clipped to [-1, 1]).

    Returns (rows, scores) in the order taken, where a row's score is the objective it was taken
    with: the ranking score, so scores never increase down the list and stay within [-1, 1].
    With `diversity` 0 it is the relevance itself.

    Example:
        >>> m = np.array([[1, 0], [0.99, 0.14], [0.6, 0.8]], np.float32)
        >>> mmr(m, np.arange(3), np.array([1.0, 0.9, 0.5]), 2, 0.0)[0].tolist()
        [0, 1]
        >>> rows, scores = mmr(m, np.arange(3), np.array([1.0, 0.9, 0.5]), 2, 0.7)
        >>> rows.tolist(), scores.round(2).tolist()
        ([0, 2], [0.3, -0.27])
    """
    diversity = check_diversity(diversity)
    rows = np.asarray(rows, np.int64)
    relevance = np.clip(np.asarray(relevance, np.float64), -1.0, 1.0)
    order = np.lexsort((rows, -relevance))  # best first; ties by row, so results are stable
    rows, relevance = rows[order], relevance[order]
    k = min(k, len(rows))
    if diversity == 0 or k == 0:
        return rows[:k], relevance[:k]
    vectors = np.asarray(matrix[rows], np.float32)
    taken, scores = [0], [(1.0 - diversity) * relevance[0]]
    closest = _similarity(vectors, 0)
    free = np.ones(len(rows), bool)
    free[0] = False
    for _ in range(1, k):
        objective = (1.0 - diversity) * relevance - diversity * closest
        objective[~free] = -np.inf
        pick = int(np.argmax(objective))
        taken.append(pick)
        scores.append(objective[pick])
        free[pick] = False
        np.maximum(closest, _similarity(vectors, pick), out=closest)
    return rows[taken], np.array(scores, np.float64)


def _similarity(vectors: np.ndarray, row: int) -> np.ndarray:
    """Cosine similarity of every vector to vector `row`, clipped to [0, 1]."""
    return np.clip((vectors @ vectors[row]).astype(np.float64), 0.0, 1.0)


def cold_start_candidates(
    matrix: np.ndarray,
    profile: Profile,
    blocked: np.ndarray,
    popularity: np.ndarray | None,
    *,
    pool: int = COLD_POOL,
    temperature: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates and relevance without positives: the most popular unblocked items (log-scaled
    popularity), topped up with evenly spread items, a little typicality to break ties (together
    in [0, 1]), minus closeness to the shopper's dislikes (at most 1): relevance in [-1, 1].

    Example:
        >>> m = np.eye(3, dtype=np.float32)
        >>> rows, rel = cold_start_candidates(m, Profile(np.zeros(0, np.int64), np.zeros(0)),
        ...                                   np.zeros(3, bool), np.array([0.0, 5.0, 1.0]))
        >>> int(rows[np.argmax(rel)])
        1
    """
    eligible = np.flatnonzero(~blocked)
    if len(eligible) == 0:
        return eligible, np.zeros(0)
    counts = np.zeros(len(eligible)) if popularity is None else popularity[eligible]
    by_count = np.lexsort((eligible, -counts))
    popular = by_count[counts[by_count] > 0][:pool]
    rest = np.setdiff1d(np.arange(len(eligible)), popular)
    spare = min(pool - len(popular), len(rest))
    spread = rest[np.unique(np.linspace(0, len(rest) - 1, spare).round().astype(np.int64))]
    chosen = np.concatenate([popular, spread]) if spare > 0 else popular
    rows = eligible[chosen]
    top = counts[chosen].max(initial=0.0)
    relevance = np.log1p(counts[chosen]) / np.log1p(top) if top > 0 else np.zeros(len(rows))
    vectors = np.asarray(matrix[rows], np.float32)
    centre = vectors.mean(axis=0)
    typical = vectors @ (centre / max(float(np.linalg.norm(centre)), 1e-12))
    span = typical.max() - typical.min()
    typicality = (typical - typical.min()) / span if span > 0 else 0.0
    relevance = (1.0 - _TYPICALITY) * relevance + _TYPICALITY * typicality
    if len(profile.negative_rows):
        relevance = relevance + kernel_scores(matrix, rows, profile, temperature)
    return rows, relevance


def rank(
    matrix: np.ndarray,
    profile: Profile,
    k: int,
    *,
    allowed: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    diversity: float | None = None,
    settings: ProfileSettings | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows to recommend for `profile` and their ranking scores (see `mmr`: never
    increasing down the list, within [-1, 1]; the relevance itself with diversity 0), in
    presentation order.

    `allowed` (a boolean mask, e.g. from metadata filters) limits the results; excluded rows
    never come back. `diversity` None uses the settings' value (the cold start has its own).

    Example:
        >>> m = np.array([[1, 0], [0.95, 0.31], [0, 1], [0.31, 0.95]], np.float32)
        >>> rank(m, Profile.from_examples([0], [2]), k=1)[0].tolist()
        [1]
    """
    settings = settings or ProfileSettings()
    blocked = np.zeros(len(matrix), bool) if allowed is None else ~np.asarray(allowed, bool)
    blocked[profile.excluded_rows] = True
    if profile.cold:
        weight = settings.cold_start_diversity if diversity is None else diversity
        rows, relevance = cold_start_candidates(
            matrix, profile, blocked, popularity, temperature=settings.temperature
        )
    else:
        weight = settings.diversity if diversity is None else diversity
        centres = interests(matrix, profile, settings.max_interests)
        per_centre = max(settings.candidates_per_interest, 3 * k)
        rows = candidate_rows(matrix, centres, per_centre, blocked)
        relevance = score_rows(matrix, rows, profile, settings.temperature)
    return mmr(matrix, rows, relevance, k, weight)
