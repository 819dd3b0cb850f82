"""Personal recommendations on hand-made catalogs whose right answers are known."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from stylefinder import Engine, UnknownItemError
from stylefinder.index.store import IndexStore
from stylefinder.recommend.personal import (
    Profile,
    ProfileSettings,
    build_profile,
    interests,
    mmr,
    rank,
)
from stylefinder.shoppers.base import Event
from stylefinder.types import EmbeddingSpace, Item

DAY = 86_400.0
NOW = 1_750_000_000.0


def engine_for(directory: Path, vectors: dict[str, tuple[np.ndarray, str]]) -> Engine:
    """An index of the given unit vectors (id -> (vector, category)), opened for queries."""
    dim = len(next(iter(vectors.values()))[0])
    store = IndexStore.create(directory, EmbeddingSpace("test", "gem", "none", dim))
    with store.writer() as writer:
        for n, (item_id, (vector, category)) in enumerate(vectors.items()):
            vector = np.asarray(vector, np.float32)
            item = Item(item_id, f"{item_id}.png", f"{n:064x}", metadata={"category": category})
            writer.put(item, vector / np.linalg.norm(vector))
    return Engine(store)


def angle(degrees: float) -> np.ndarray:
    return np.array([math.cos(math.radians(degrees)), math.sin(math.radians(degrees))])


@pytest.fixture
def arc(tmp_path: Path) -> Engine:
    """Items on the unit circle: p at 0 deg, x at +20, y at -20, d at -40, far ones beyond."""
    points = {"p": 0, "x": 20, "y": -20, "d": -40, "e": 90, "f": 180, "g": 270}
    return engine_for(tmp_path / "arc", {k: (angle(a), "A") for k, a in points.items()})


@pytest.fixture
def clusters(tmp_path: Path) -> Engine:
    """Three tight clusters of five items (A, B, C) along the axes of 3-d space."""
    rng = np.random.default_rng(0)
    vectors = {}
    for axis, name in enumerate("ABC"):
        for n in range(5):
            vector = np.eye(3)[axis] + 0.08 * rng.standard_normal(3)
            vectors[f"{name.lower()}{n}"] = (vector, name)
    return engine_for(tmp_path / "clusters", vectors)


def ids(results) -> list[str]:
    return [r.id for r in results]


# -- negatives and recency ---------------------------------------------------------------------


def test_a_dislike_pushes_its_neighbours_down(arc: Engine):
    arc.record_event("u", "p", "like")
    before = ids(arc.recommend_for_user("u", k=2, diversity=0))
    assert set(before) == {"x", "y"}  # equally near p
    arc.record_event("u", "d", "dislike")
    results = arc.recommend_for_user("u", k=5, diversity=0)
    after = ids(results)
    assert after[0] == "x" and after.index("y") > 1 and "d" not in after
    scores = {r.id: r.score for r in results}
    assert scores["x"] == pytest.approx(math.cos(math.radians(20)), abs=0.01)
    assert scores["y"] < scores["x"] - 0.5


def test_recent_events_count_more(clusters: Engine):
    clusters.record_event("u", "a0", "like", timestamp=NOW - 200 * DAY)
    clusters.record_event("u", "b0", "like", timestamp=NOW - 1 * DAY)
    top = ids(clusters.recommend_for_user("u", k=4, diversity=0, now=NOW))
    assert all(i.startswith("b") for i in top)
    clusters.record_event("v", "a0", "like", timestamp=NOW - 1 * DAY)
    clusters.record_event("v", "b0", "like", timestamp=NOW - 200 * DAY)
    top = ids(clusters.recommend_for_user("v", k=4, diversity=0, now=NOW))
    assert all(i.startswith("a") for i in top)
    no_decay = ProfileSettings(half_life_days=None)
    both = ids(clusters.recommend_for_user("u", k=8, diversity=0, settings=no_decay, now=NOW))
    assert {i[0] for i in both} == {"a", "b"}


def test_a_purchase_counts_more_than_a_view(clusters: Engine):
    clusters.record_event("u", "a0", "view", timestamp=NOW)
    clusters.record_event("u", "c0", "purchase", timestamp=NOW)
    top = ids(clusters.recommend_for_user("u", k=4, diversity=0, now=NOW))
    assert all(i.startswith("c") for i in top)


def test_two_interests_are_both_served(clusters: Engine):
    for item in ("a0", "a1", "c0", "c1"):
        clusters.record_event("u", item, "like")
    top = ids(clusters.recommend_for_user("u", k=6, diversity=0))
    assert {i[0] for i in top} == {"a", "c"}
    assert sum(i[0] == "a" for i in top) == 3


# -- exclusions and filters --------------------------------------------------------------------


def test_bought_and_disliked_items_never_come_back(clusters: Engine):
    clusters.record_event("u", "a0", "purchase")
    clusters.record_event("u", "a1", "dislike")
    clusters.record_event("u", "b0", "like")
    clusters.record_event("u", "c0", "like")
    clusters.record_event("u", "c0", "dislike")  # the latest feedback wins: disliked
    banned = {"a0", "a1", "c0"}
    keep_seen = ProfileSettings(exclude_seen=False)
    for diversity in (0.0, 0.3, 1.0):
        for settings in (None, keep_seen):
            for filters in (None, {"category": ["A", "C"]}):
                got = ids(
                    clusters.recommend_for_user(
                        "u", k=15, diversity=diversity, settings=settings, filters=filters
                    )
                )
                assert not banned & set(got)
                assert ("b0" in got) == (settings is keep_seen and filters is None)
    assert len(ids(clusters.recommend_for_user("u", k=15))) == 15 - 4


def test_filters_limit_the_results(clusters: Engine):
    clusters.record_event("u", "a0", "like")
    got = clusters.recommend_for_user("u", k=10, filters={"category": "B"})
    assert len(got) == 5 and {r.metadata["category"] for r in got} == {"B"}


def test_events_of_removed_items_are_ignored():
    profile = build_profile(
        [Event("u", "gone", "purchase", NOW), Event("u", "a", "like", NOW)], {"a": 0}, now=NOW
    )
    assert profile.positive_rows.tolist() == [0] and profile.excluded_rows.tolist() == [0]


# -- diversity ---------------------------------------------------------------------------------


def test_more_diversity_spreads_the_results(clusters: Engine):
    for item in ("a0", "b0", "c0"):
        clusters.record_event("u", item, "like")
    clusters.record_event("u", "a1", "purchase")  # A is the favourite
    focused = ids(clusters.recommend_for_user("u", k=3, diversity=0))
    spread = ids(clusters.recommend_for_user("u", k=3, diversity=0.9))
    assert {i[0] for i in focused} == {"a"}
    assert {i[0] for i in spread} == {"a", "b", "c"}


def test_mmr_without_diversity_is_the_relevance_order():
    matrix = np.eye(4, dtype=np.float32)
    rows, scores = mmr(matrix, np.array([3, 1, 2]), np.array([0.1, 0.9, 0.5]), 3, 0.0)
    assert rows.tolist() == [1, 2, 3] and scores.tolist() == [0.9, 0.5, 0.1]
    with pytest.raises(ValueError, match="diversity"):
        mmr(matrix, np.array([1]), np.array([1.0]), 1, 1.5)


def test_interests_find_one_centre_per_cluster():
    matrix = np.array([[1, 0, 0], [0.98, 0.2, 0], [0, 0, 1], [0, 0.2, 0.98]], np.float32)
    centres = interests(matrix, Profile.from_examples([0, 1, 2, 3]), max_interests=2)
    assert sorted(np.argmax(np.abs(centres), axis=1).tolist()) == [0, 2]


# -- cold start ----------------------------------------------------------------------------------


def test_cold_start_is_popular_and_diverse(clusters: Engine):
    for shopper in ("s1", "s2", "s3"):
        clusters.record_event(shopper, "b3", "purchase")
    clusters.record_event("s1", "b2", "purchase")
    clusters.events.item_counts(max_age_s=0)  # fresh counts for this test
    got = ids(clusters.recommend_for_user("newcomer", k=3))
    assert got[0] == "b3"
    assert {i[0] for i in got} == {"a", "b", "c"}  # the rest spread over the catalog


def test_cold_start_without_any_events_still_answers(clusters: Engine):
    got = ids(clusters.recommend_for_user("newcomer", k=6))
    assert len(got) == 6 and len(set(got)) == 6 and {i[0] for i in got} == {"a", "b", "c"}


def test_cold_start_keeps_away_from_dislikes(clusters: Engine):
    for item in ("a0", "a1"):
        clusters.record_event("u", item, "dislike")
    got = ids(clusters.recommend_for_user("u", k=10, diversity=0))
    assert not {"a0", "a1"} & set(got)
    assert all(i[0] != "a" for i in got[:8])


# -- examples and arguments ----------------------------------------------------------------------


def test_more_like_these_not_like_those(arc: Engine, clusters: Engine):
    assert ids(arc.recommend_from_examples(["p"], k=2, diversity=0)) == ["x", "y"]
    got = ids(arc.recommend_from_examples(["p"], ["d"], k=2, diversity=0))
    assert got[0] == "x" and "y" not in got and not {"p", "d"} & set(got)
    got = ids(clusters.recommend_from_examples("a0", k=4, diversity=0))
    assert got and all(i.startswith("a") and i != "a0" for i in got)
    with pytest.raises(UnknownItemError, match="nope"):
        clusters.recommend_from_examples(["a0"], ["nope"])
    with pytest.raises(ValueError, match="at least one positive"):
        clusters.recommend_from_examples([], ["a0"])


def test_bad_arguments(clusters: Engine):
    with pytest.raises(ValueError, match="diversity"):
        clusters.recommend_for_user("u", diversity=2)
    with pytest.raises(ValueError, match="k must be"):
        clusters.recommend_for_user("u", k=0)
    with pytest.raises(ValueError, match="user id"):
        clusters.recommend_for_user("")
    with pytest.raises(UnknownItemError):
        clusters.record_event("u", "not-in-catalog", "like")
    with pytest.raises(ValueError, match="half_life_days"):
        ProfileSettings(half_life_days=0)
    with pytest.raises(ValueError, match="unknown event kind"):
        ProfileSettings(kind_weights={"wishlist": 1.0})


def test_rank_on_a_bare_matrix():
    matrix = np.stack([angle(a) for a in (0, 10, 50, 180)]).astype(np.float32)
    rows, scores = rank(matrix, Profile.from_examples([0]), k=3, diversity=0)
    assert rows.tolist() == [1, 2, 3]
    assert scores[0] == pytest.approx(math.cos(math.radians(10)), abs=1e-5)


# -- scores on a real index ----------------------------------------------------------------------


@pytest.fixture
def demo_engine(demo_index, tmp_path: Path) -> Engine:
    """A private copy of the demo index (events are written to its manifest)."""
    import shutil

    target = tmp_path / "index"
    shutil.copytree(demo_index[0], target)
    return Engine.open(target)


def _in_rank_order(results) -> bool:
    scores = [r.score for r in results]
    return all(-1.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)


def test_feed_scores_are_in_rank_order_and_in_range(demo_engine: Engine):
    ids_ = sorted(demo_engine.snapshot.row_of)
    for shopper, item in (("a", ids_[0]), ("a", ids_[1]), ("b", ids_[0])):
        demo_engine.record_event(shopper, item, "purchase")
    demo_engine.events.item_counts(max_age_s=0)  # fresh counts: a cold start with popularity
    cold = demo_engine.recommend_for_user("newcomer", k=10)
    assert cold[0].id == ids_[0] and _in_rank_order(cold), [r.score for r in cold]
    for item in (ids_[3], ids_[400], ids_[800]):
        demo_engine.record_event("u", item, "like")
    demo_engine.record_event("u", ids_[5], "dislike")
    for diversity in (None, 0.0, 0.5, 1.0):
        got = demo_engine.recommend_for_user("u", k=12, diversity=diversity)
        assert len(got) == 12 and _in_rank_order(got), (diversity, [r.score for r in got])
    focused = demo_engine.recommend_for_user("u", k=5, diversity=0.0)
    assert focused[0].score == pytest.approx(max(r.score for r in focused))
    examples = demo_engine.recommend_from_examples([ids_[3]], [ids_[5]], k=8)
    assert _in_rank_order(examples)


def test_mmr_scores_are_the_objective_it_ranked_by():
    matrix = np.stack([angle(a) for a in (0, 5, 90, 100)]).astype(np.float32)
    rows, scores = mmr(matrix, np.arange(4), np.array([0.9, 0.88, 0.6, 0.5]), 3, 0.5)
    assert rows.tolist() == [0, 2, 1]  # the far item beats the near twin
    assert scores[0] == pytest.approx(0.5 * 0.9)
    assert scores[1] == pytest.approx(0.5 * 0.6)  # orthogonal to row 0: no penalty
    assert scores[2] == pytest.approx(0.5 * 0.88 - 0.5 * math.cos(math.radians(5)))
    single = mmr(matrix, np.arange(4), np.array([0.9, 0.88, 0.6, 0.5]), 1, 0.5)[1]
    assert single.tolist() == [pytest.approx(0.45)]  # the first score does not depend on k
