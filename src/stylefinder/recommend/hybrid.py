"""Search by words, by a photo, or both: rankings fused by weighted reciprocal rank fusion.

- Words alone: the items whose words match best (`recommend.text_query`), by BM25; with
  `expand`, among items whose words match equally ("Shirt" and "Shirt") those that look most
  like the best few matches come first, and after every match come items that look like them
  (scored below the last match, by their similarity to the best matches).
- A photo and words ("like this photo, but in red"): the photo's 200 nearest items, fused
  with the words' ranking of them: those that match every word (in the photo's order), then
  those that match some; when fewer than k match every word, the best 200 matches overall
  join. Items both near and matching come first.

With a photo, each ranking gives an item `weight / (RRF_K + rank)`; `text_weight` (0..1) is
the words' share, the rest the photo's. Works on any view with `text_ranking`,
`text_matching`, `vector_ranking`, `vectors_of` and `results_of` (an index directory's, whose
keys are matrix rows, or PostgreSQL's, whose keys are item ids).

Example:
    >>> fuse([([7, 3], 0.5), ([3, 9], 0.5)], k=2)
    [(3, 0.016261), (7, 0.008197)]
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from stylefinder.recommend.filters import Filters
from stylefinder.recommend.text_query import TextQuery
from stylefinder.recommend.view import Recommendation

RRF_K = 60  # the usual constant of reciprocal rank fusion (Cormack et al. 2009)
DEFAULT_TEXT_WEIGHT = 0.5
TEXT_CANDIDATES = 200  # best text matches fused, beside the photo's neighbours that match
VECTOR_CANDIDATES = 200  # visual neighbours fused
EXPAND_FROM = 5  # the best text matches whose look expands a text query


def fuse(rankings: Sequence[tuple[Sequence[Hashable], float]], k: int) -> list[tuple]:
    """The `k` best keys of weighted rankings (`(keys best first, weight)`), by weighted
    reciprocal rank fusion, with their fused scores.

    Example:
        >>> fuse([(["a", "b"], 1.0)], k=1)
        [('a', 0.016393)]
    """
    scores: dict[Hashable, float] = {}
    for keys, weight in rankings:
        for rank, key in enumerate(keys, 1):
            scores[key] = scores.get(key, 0.0) + weight / (RRF_K + rank)
    best = sorted(scores.items(), key=lambda pair: -pair[1])[:k]
    return [(key, round(score, 6)) for key, score in best]


def check_text_weight(text_weight: float) -> float:
    """`text_weight` as a float in 0..1, else `ValueError`."""
    weight = float(text_weight)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"text_weight must be between 0 and 1, not {text_weight}")
    return weight


def check_text(text: object) -> str:
    """`text` when it is a string with something in it, else `ValueError`.

    Example:
        >>> check_text("red dress")
        'red dress'
    """
    if not isinstance(text, str):
        raise ValueError("the text query must be a string")
    if not text.strip():
        raise ValueError("the text query is empty")
    return text


def searchable_words(text: str) -> str | None:
    """`text`, or None when it has no word the metadata can match ("a photo of").

    Example:
        >>> searchable_words("a photo of") is None
        True
    """
    try:
        TextQuery.parse(text)
    except ValueError:
        return None
    return text


def mixed_vector(photo: np.ndarray, words: np.ndarray, text_weight: float) -> np.ndarray:
    """The unit vector between a photo's and a text's (one CLIP-family space), `text_weight`
    (0..1) the text's share.

    Example:
        >>> mixed_vector(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.5).round(3)
        array([0.707, 0.707])
    """
    weight = check_text_weight(text_weight)
    mixed = (1.0 - weight) * np.asarray(photo, np.float64) + weight * np.asarray(words)
    norm = float(np.linalg.norm(mixed))
    return (mixed / norm if norm > 0 else np.asarray(photo, np.float64)).astype(np.float32)


def hybrid_search(
    view,
    *,
    text: str | None = None,
    vector: np.ndarray | None = None,
    k: int = 10,
    filters: Filters | None = None,
    text_weight: float = DEFAULT_TEXT_WEIGHT,
    expand: bool = True,
    exclude: Sequence[Hashable] = (),
) -> list[Recommendation]:
    """The `k` items best matching words `text` and/or a unit `vector` of the view's space
    (a query photo's) that pass `filters`, without the keys `exclude`.

    Example:
        >>> [r.id for r in hybrid_search(view, text="navy linen shirt", k=3)]  # doctest: +SKIP
        ['shirt-12', 'shirt-40', 'shirt-7']
    """
    if text is None and vector is None:
        raise ValueError("give words (text), an image, or both")
    weight = check_text_weight(text_weight)
    skip = set(exclude)
    if vector is None:
        return _words_alone(view, TextQuery.parse(text), k, filters=filters, expand=expand)
    near = view.vector_ranking(vector, max(k, VECTOR_CANDIDATES) + len(skip), filters=filters)
    near_keys = [key for key, _ in near if key not in skip]
    rankings: list[tuple[list, float]] = [(near_keys, 1.0 - weight)] if weight < 1.0 else []
    if text is not None and weight > 0.0:
        query = TextQuery.parse(text)
        rankings.append((_words_ranking(view, query, near_keys, k, filters, skip), weight))
    fused = fuse(rankings, k)
    return view.results_of([key for key, _ in fused], [score for _, score in fused])


def _words_ranking(
    view, query: TextQuery, near: list, k: int, filters: Filters | None, skip: set
) -> list:
    """The words' ranking beside a photo: the photo's neighbours that match every word (in
    the photo's order), then those that match some words; when fewer than `k` match every
    word, the best matches overall join (those of every word after the neighbours of every
    word, the rest last)."""
    every, some = view.text_matching(query, near)
    best: list = []
    if sum(1 for key in near if key in every) < k:
        found = view.text_ranking(query, TEXT_CANDIDATES, filters=filters)
        best = [key for key, _ in found if key not in skip]
        best_every, _ = view.text_matching(query, best)
        every = every | best_every
    ranked = [
        *(key for key in near if key in every),
        *(key for key in best if key in every),
        *(key for key in near if key in some),
        *best,
    ]
    return list(dict.fromkeys(ranked))


def _words_alone(
    view, query: TextQuery, k: int, *, filters: Filters | None, expand: bool
) -> list[Recommendation]:
    """Text matches by relevance; with `expand`, equal relevance ordered by look, and then
    look-alikes of the best matches (see the module's docstring)."""
    found = view.text_ranking(query, max(k, TEXT_CANDIDATES if expand else k), filters=filters)
    if not expand or not found:
        found = found[:k]
        return view.results_of([key for key, _ in found], [score for _, score in found])
    look = _mean_look(view.vectors_of([key for key, _ in found[:EXPAND_FROM]]))
    last = found[min(k, len(found)) - 1][1]
    tied = [key for key, score in found if score >= last]  # what may reach the first k
    similarity = dict(zip(tied, view.vectors_of(tied) @ look, strict=True))
    ordered = sorted(found, key=lambda pair: (-pair[1], -similarity.get(pair[0], -2.0)))[:k]
    if len(ordered) < k:
        matched = {key for key, _ in found}
        alike = view.vector_ranking(look, k + len(matched), filters=filters)
        lowest = ordered[-1][1]
        ordered += [
            (key, round(lowest * max(0.0, cosine) * 0.5, 6))
            for key, cosine in alike
            if key not in matched
        ][: k - len(ordered)]
    return view.results_of([key for key, _ in ordered], [score for _, score in ordered])


def _mean_look(vectors: np.ndarray) -> np.ndarray | None:
    """The unit mean of some unit vectors (None when there are none)."""
    if len(vectors) == 0:
        return None
    mean = np.asarray(vectors, np.float32).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else None
