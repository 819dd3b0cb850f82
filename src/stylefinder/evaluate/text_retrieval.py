"""Text-to-image retrieval quality: the shop's category names as queries, scored against its
labels.

For full-text search the words searched are one column (the title), not every column: the
label column itself would answer its own names. The titles go through the index's own
full-text code (`index.text_index`, `recommend.text_query`) in a throwaway in-memory table.
With a CLIP-family backbone, each name's prompt ("a photo of a dress") is embedded and the
items' image vectors ranked by it (`meaning_metrics`), and zero-shot accuracy is the share
of items whose nearest prompt is their label's.

Example:
    >>> titles = ["Red summer dress", "Blue denim jacket", "Green dress"]
    >>> text_metrics(titles, ["Dress", "Jacket", "Dress"], ks=(1, 2))["precision@1"]
    1.0
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence

import numpy as np

from stylefinder.index.text_index import create_text_index, match_rows
from stylefinder.recognize.zero_shot import prompt
from stylefinder.recommend.text_query import TextQuery, tiered


def text_metrics(
    titles: Sequence[str], labels: Sequence[str], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """precision@k and recall@k, averaged over the distinct labels, of searching `titles`
    for each label's name (labels without a word to search for are left out); `queries` is
    how many labels were asked.

    Example:
        >>> text_metrics(["Navy shirt", "Red shirt"], ["Shirt", "Shirt"], ks=(1,))["recall@1"]
        0.5
    """
    if len(titles) != len(labels):
        raise ValueError("titles and labels must have one entry per item")
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE items (id TEXT PRIMARY KEY, row INTEGER, metadata TEXT)")
    create_text_index(con)
    con.executemany(
        "INSERT INTO items VALUES (?, ?, ?)",
        [(str(row), row, json.dumps({"title": str(t)})) for row, t in enumerate(titles)],
    )
    labels_array = np.asarray([str(label) for label in labels])
    depth = max(ks)
    scores: dict[str, list[float]] = {f"{m}@{k}": [] for m in ("precision", "recall") for k in ks}
    for label in sorted(set(labels_array)):
        try:
            query = TextQuery.parse(label)
        except ValueError:
            continue
        found = tiered(
            match_rows(con, query.fts_expression(every=True), size=len(titles), limit=depth),
            match_rows(con, query.fts_expression(), size=len(titles), limit=depth),
            depth,
        )
        hits = np.asarray([labels_array[row] == label for row, _ in found], bool)
        relevant = int((labels_array == label).sum())
        for k in ks:
            scores[f"precision@{k}"].append(float(hits[:k].sum()) / k)
            scores[f"recall@{k}"].append(float(hits[:k].sum()) / relevant)
    con.close()
    metrics = {name: round(float(np.mean(v)), 4) if v else 0.0 for name, v in scores.items()}
    return {**metrics, "queries": len(scores[f"precision@{ks[0]}"])}


def meaning_metrics(
    vectors: np.ndarray,
    labels: Sequence[str],
    encode: Callable[[Sequence[str]], np.ndarray],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """precision@k and recall@k, averaged over the distinct labels, of ranking the items' unit
    image `vectors` by the embedded prompt of each label's name (`encode`: texts -> unit
    vectors in the same space), and `zero_shot_accuracy`: the share of items whose nearest
    prompt is their own label's.

    Example:
        >>> prompts = lambda texts: np.eye(2, dtype=np.float32)[: len(texts)]
        >>> meaning_metrics(np.eye(2, dtype=np.float32), ["a", "b"], prompts, ks=(1,))["recall@1"]
        1.0
    """
    labels_array = np.asarray([str(label) for label in labels])
    if len(labels_array) != len(vectors):
        raise ValueError("vectors and labels must have one entry per item")
    names = sorted(set(labels_array.tolist()))
    queries = np.asarray(encode([prompt(name) for name in names]), np.float32)
    similarity = queries @ np.asarray(vectors, np.float32).T  # (names, items)
    depth = min(max(ks), len(labels_array))
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :depth]
    metrics: dict[str, float] = {}
    for k in ks:
        hits = labels_array[order[:, :k]] == np.asarray(names)[:, None]
        relevant = np.array([(labels_array == name).sum() for name in names])
        metrics[f"precision@{k}"] = round(float((hits.sum(axis=1) / k).mean()), 4)
        metrics[f"recall@{k}"] = round(float((hits.sum(axis=1) / relevant).mean()), 4)
    nearest = np.asarray(names)[similarity.argmax(axis=0)]
    metrics["zero_shot_accuracy"] = round(float((nearest == labels_array).mean()), 4)
    return {**metrics, "queries": len(names)}
