"""Simulated shoppers on a labeled catalog, and how well a recommended list serves them.

Each simulated shopper prefers one or two categories (labels). Within each, their taste is a
neighbourhood: the `taste_pool` items of the category most like a random anchor item. They like
about `likes` items drawn from it over the past `days` days and dislike a few items of other
categories. Their latest likes (`held_out`, a share) are kept back; the rest are the events the
recommenders see (`personalization.evaluate_personalization` compares methods with them).

Metrics of the top k per shopper, averaged over shoppers (`list_metrics`):

- hit rate@k: a held-out liked item is in the top k;
- precision@k: share of the top k in a preferred category;
- nDCG@k: of the held-out liked items;
- intra-list diversity: mean 1 - cosine between the top k items (raw embeddings);
- coverage: share of the catalog recommended to at least one shopper.

Example:
    >>> v = np.eye(4, dtype=np.float32)
    >>> shoppers = simulate_shoppers(v, ["a", "a", "b", "b"], list("wxyz"), users=2, likes=2,
    ...                              dislikes=1, two_categories=0, taste_pool=2)
    >>> [s.user_id for s in shoppers]
    ['sim-00000', 'sim-00001']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stylefinder.shoppers.base import Event

NOW = 1_750_000_000.0  # a fixed "now" (2025-06-15), so that runs repeat exactly
_DAY_S = 86_400.0


@dataclass(frozen=True)
class Shopper:
    """One simulated shopper: the events a recommender sees and the likes kept back."""

    user_id: str
    preferred: tuple[str, ...]
    events: tuple[Event, ...]
    held_out: tuple[int, ...]  # rows of the liked items kept back
    last_liked: int  # row of the latest like among the events
    seen: tuple[int, ...]  # rows of every item in the events


def simulate_shoppers(
    vectors: np.ndarray,
    labels: Sequence[str | None],
    item_ids: Sequence[str],
    *,
    users: int = 300,
    seed: int = 0,
    likes: int = 10,
    dislikes: int = 3,
    held_out: float = 0.3,
    two_categories: float = 0.5,
    taste_pool: int = 50,
    days: float = 60.0,
    now: float = NOW,
) -> list[Shopper]:
    """Simulated shoppers over a labeled catalog (items without a label are never liked).

    A shopper likes `likes` +- 2 items, prefers two categories with probability
    `two_categories` (likes split between them), and dislikes `dislikes` items elsewhere.

    Example:
        >>> v = np.eye(4, dtype=np.float32)
        >>> s = simulate_shoppers(v, ["a", "a", "b", "b"], list("wxyz"), users=1, likes=2,
        ...                       dislikes=1, two_categories=0, taste_pool=2)
        >>> len(s[0].events), len(s[0].held_out)
        (2, 1)
    """
    rng = np.random.default_rng(seed)
    labels = np.array([label or "" for label in labels], dtype=object)
    classes = sorted({c for c in labels.tolist() if c})
    members = {c: np.flatnonzero(labels == c) for c in classes}
    classes = [c for c in classes if len(members[c]) >= 2]
    if len(classes) < 2:
        raise ValueError("the simulation needs at least two labels with two items or more")
    vectors = np.asarray(vectors, np.float32)
    shoppers = []
    for n in range(users):
        count = max(2, int(likes + rng.integers(-2, 3)))
        chosen = 2 if rng.random() < two_categories else 1
        preferred = [classes[i] for i in rng.choice(len(classes), chosen, replace=False)]
        liked: list[int] = []
        for position, category in enumerate(preferred):
            share = count // chosen + (1 if position < count % chosen else 0)
            rows = members[category]
            anchor = rows[rng.integers(len(rows))]
            nearest = rows[np.argsort(-(vectors[rows] @ vectors[anchor]), kind="stable")]
            pool = nearest[: max(taste_pool, share)]
            liked += rng.choice(pool, min(share, len(pool)), replace=False).tolist()
        times = np.sort(now - rng.uniform(0, days * _DAY_S, len(liked)))
        liked = [liked[i] for i in rng.permutation(len(liked))]  # interleave the categories
        kept_back = max(1, round(held_out * len(liked)))
        seen_likes, back = liked[:-kept_back], liked[-kept_back:]
        others = np.flatnonzero(~np.isin(labels, preferred) & (labels != ""))
        hated = rng.choice(others, min(dislikes, len(others)), replace=False).tolist()
        user = f"sim-{n:05d}"
        events = [
            Event(user, item_ids[row], "like", float(t))
            for row, t in zip(seen_likes, times[: len(seen_likes)], strict=True)
        ]
        events += [
            Event(user, item_ids[row], "dislike", float(now - rng.uniform(0, days * _DAY_S)))
            for row in hated
        ]
        events.sort(key=lambda e: e.timestamp)
        shoppers.append(
            Shopper(
                user,
                tuple(preferred),
                tuple(events),
                tuple(back),
                seen_likes[-1] if seen_likes else back[0],
                tuple(sorted(set(seen_likes) | set(hated))),
            )
        )
    return shoppers


def list_metrics(
    results: np.ndarray,
    shoppers: Sequence[Shopper],
    labels: Sequence[str | None],
    vectors: np.ndarray,
) -> dict[str, float]:
    """hit rate, precision (preferred categories), nDCG, intra-list diversity and coverage of
    one method's result rows (shoppers, k); -1 marks an empty slot.

    Example:
        >>> v = np.eye(3, dtype=np.float32)
        >>> s = [Shopper("u", ("a",), (), (1,), 0, (0,))]
        >>> list_metrics(np.array([[1, 2]]), s, ["a", "a", "b"], v)["precision@2"]
        0.5
    """
    labels = np.array([label or "" for label in labels], dtype=object)
    k = results.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    hits, precision, ndcg, diversity = [], [], [], []
    for rows, shopper in zip(results, shoppers, strict=True):
        rows = rows[rows >= 0]
        relevant = np.isin(rows, shopper.held_out)
        hits.append(float(relevant.any()))
        precision.append(float(np.isin(labels[rows], shopper.preferred).sum()) / k)
        ideal = discounts[: min(len(shopper.held_out), k)].sum()
        ndcg.append(float((relevant * discounts[: len(rows)]).sum() / ideal) if ideal else 0.0)
        if len(rows) > 1:
            block = np.asarray(vectors[np.sort(rows)], np.float32)
            similarity = block @ block.T
            pairs = len(rows) * (len(rows) - 1)
            diversity.append(float((pairs - (similarity.sum() - np.trace(similarity))) / pairs))
    shown = np.unique(results[results >= 0])
    return {
        f"hit_rate@{k}": float(np.mean(hits)),
        f"precision@{k}": float(np.mean(precision)),
        f"ndcg@{k}": float(np.mean(ndcg)),
        "intra_list_diversity": float(np.mean(diversity)) if diversity else 0.0,
        "coverage": float(len(shown) / len(vectors)),
    }
