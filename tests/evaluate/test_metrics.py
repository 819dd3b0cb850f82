"""Retrieval metrics on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from stylefinder.evaluate.metrics import all_correct_at_k, leave_one_out_neighbours, precision_at_k


def test_two_tight_clusters_are_perfect():
    vectors = np.array([[1, 0], [0.99, 0.14], [0.98, 0.2], [0, 1], [0.14, 0.99], [0.2, 0.98]])
    labels = np.array(["a", "a", "a", "b", "b", "b"])
    assert precision_at_k(vectors, labels, k=2) == 1.0
    assert all_correct_at_k(vectors, labels, k=2) == 1.0
    # with k=3 each item has only 2 same-label neighbours: 2/3 precision, never all correct
    assert precision_at_k(vectors, labels, k=3) == pytest.approx(2 / 3)
    assert all_correct_at_k(vectors, labels, k=3) == 0.0


def test_neighbours_exclude_the_item_itself_and_are_ordered():
    vectors = np.array([[1, 0], [0.8, 0.6], [0, 1]], np.float32)
    neighbours = leave_one_out_neighbours(vectors, 2)
    assert neighbours.tolist() == [[1, 2], [0, 2], [1, 0]]


def test_interleaved_labels_are_all_wrong():
    vectors = np.array([[1, 0], [0.9, 0.1], [0.1, 0.9], [0, 1]], np.float32)
    labels = np.array([0, 1, 0, 1])
    assert precision_at_k(vectors, labels, k=1) == 0.0
