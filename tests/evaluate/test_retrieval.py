"""Leave-one-out evaluation: metrics with hand-computed answers, and the written report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stylefinder.cli import main
from stylefinder.evaluate.retrieval import retrieval_metrics


def test_hand_made_case():
    # a0 a1 a2 on one side, b0 b1 on the other; a2 sits closer to the b's than to the a's
    vectors = np.array([[1.0, 0.0], [0.95, 0.31], [0.3, 0.95], [0.0, 1.0], [0.1, 0.99]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = ["a", "a", "a", "b", "b"]
    result = retrieval_metrics(vectors, labels, ks=[1, 2])
    m = result.metrics
    # top-1 of each: a0->a1 ✓, a1->a0 ✓, a2->b1 ✗, b0->b1 ✓, b1->b0 ✓
    assert m["precision@1"] == pytest.approx(4 / 5)
    assert m["recall@1"] == pytest.approx(4 / 5)
    # top-2: a0 [a1,a2] 2/2, a1 [a0,a2] 2/2, a2 [b1,b0] 0/2, b0 [b1,a2] 1/2, b1 [b0,a2] 1/2
    assert m["precision@2"] == pytest.approx((1 + 1 + 0 + 0.5 + 0.5) / 5)
    assert m["recall@2"] == pytest.approx(4 / 5)
    # AP@10 over the 4 others, normalized by the same-label count (a: 2, b: 1):
    # a0 [a1 a2 ..] = (1 + 1)/2; a1 likewise 1; a2 [b1 b0 a1 a0] = (1/3 + 2/4)/2;
    # b0 [b1 ..] = 1; b1 [b0 ..] = 1
    assert m["mAP@10"] == pytest.approx((1 + 1 + (1 / 3 + 2 / 4) / 2 + 1 + 1) / 5)
    assert result.confusion.tolist() == [[2, 1], [0, 2]]
    assert [row["top1_accuracy"] for row in result.per_class] == pytest.approx([2 / 3, 1.0])


def test_rejects_mismatched_input():
    with pytest.raises(ValueError, match="one label per vector"):
        retrieval_metrics(np.ones((3, 2), np.float32), ["a", "b"])


def test_eval_command_writes_a_report(demo_index, tmp_path, capsys):
    index_dir, _ = demo_index
    code = main(
        [
            "eval",
            "--index",
            str(index_dir),
            "--label-column",
            "category",
            "--report",
            str(tmp_path / "report"),
            "--json",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["items"] == printed["items"] == 1000
    assert report["metrics"]["precision@5"] == pytest.approx(0.7836, abs=0.002)
    assert 0 < report["metrics"]["mAP@10"] < report["metrics"]["recall@10"] <= 1
    assert len(report["per_class"]) == 10 and report["command"].startswith("stylefinder eval")
    for name in ("report.md", "per_class_precision.png", "confusion.png", "samples.png"):
        assert (tmp_path / "report" / name).stat().st_size > 1000
    assert main(["eval", "--index", str(index_dir), "--label-column", "colour"]) == 2


def test_eval_of_a_space_tuned_on_the_same_labels_warns_and_reports_its_real_dimension(
    demo_index, tmp_path, capsys
):
    import shutil

    from stylefinder.errors import UnknownColumnError
    from stylefinder.evaluate.retrieval import evaluate_index
    from stylefinder.jobs.tune import tune_index

    source, _ = demo_index
    index_dir = tmp_path / "ix"
    shutil.copytree(source, index_dir)
    with pytest.raises(UnknownColumnError, match="columns are: category, colours") as caught:
        tune_index(index_dir, label_column="articleType", epochs=1)
    assert "category" in caught.value.known
    assert main(["eval", "--index", str(index_dir), "--label-column", "nosuch"]) == 2

    raw = evaluate_index(index_dir, label_column="category")
    assert raw.warnings == [] and raw.dim == 1280 and not raw.tuned
    projection = tune_index(index_dir, label_column="category", epochs=1)
    tuned = evaluate_index(index_dir, label_column="category")
    assert tuned.tuned and tuned.dim == projection.dim != 1280
    assert "tuned on these same 'category' labels" in tuned.warnings[0]

    report = tmp_path / "report"
    argv = ["eval", "--index", str(index_dir), "--label-column", "category", "--report"]
    assert main([*argv, str(report)]) == 0
    assert "WARNING: the projection was tuned on these same" in capsys.readouterr().err
    text = (report / "report.md").read_text()
    assert f"{projection.dim}-d tuned (from 1280-d)" in text and "**Warning:**" in text
    assert json.loads((report / "report.json").read_text())["index"]["dim"] == projection.dim
