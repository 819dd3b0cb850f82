"""`stylefinder eval fashion-mnist` on a small slice of the official train and test splits."""

from __future__ import annotations

import json

import numpy as np

from stylefinder.cli import main


def test_eval_fashion_mnist_reports_baselines_tuned_classifier_and_held_out(tmp_path, capsys):
    report = tmp_path / "report"
    args = ["eval", "fashion-mnist", "--limit", "200", "--epochs", "4", "--report", str(report)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "classifier top-1 accuracy" in out and "held-out class Shirt" in out
    result = json.loads((report / "report.json").read_text())
    assert result["command"].startswith("stylefinder eval fashion-mnist")
    assert result["train_items"] == result["test_items"] == 200
    rows = {row["configuration"]: row for row in result["rows"]}
    assert set(rows) == {
        "raw pixels, cosine",
        "efficientnet-lite0 gem, cosine",
        "efficientnet-lite0 max, cosine",
        "efficientnet-lite0 avg, cosine",
        "original design: efficientnet-lite0 max, Euclidean",
        "tuned (mlp)",
    }
    # Euclidean distance between unit vectors ranks exactly as cosine similarity does
    euclidean = rows["original design: efficientnet-lite0 max, Euclidean"]
    assert euclidean["precision@5"] == rows["efficientnet-lite0 max, cosine"]["precision@5"]
    for row in rows.values():
        assert 0.2 < row["precision@5"] <= 1 and 0 < row["mAP@10"] <= 1
    classifier = result["classifier"]
    assert np.asarray(classifier["confusion"]).sum() == 200
    assert (
        classifier["top1_accuracy"] > 0.5
        and classifier["top3_accuracy"] >= classifier["top1_accuracy"]
    )
    held = result["held_out"]
    assert held["class"] == "Shirt" and 0 <= held["tuned_without_it"] <= 1
    assert (report / "report.md").read_text().count("|") > 30
    assert (report / "classifier_confusion.png").stat().st_size > 10_000
