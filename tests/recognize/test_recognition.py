"""Recognition surfaces: Engine.recognize, index-time annotation, colour filters and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from stylefinder import Engine
from stylefinder.catalog.demo import CLASS_NAMES
from stylefinder.cli import main
from stylefinder.errors import BadImageError
from stylefinder.jobs.annotate import annotate_index
from stylefinder.jobs.build import build_index
from stylefinder.recognize.recognition import top_categories
from stylefinder.recognize.taxonomy import TAXONOMY, UNKNOWN


@pytest.fixture
def small_index(small_catalog, embedder, tmp_path):
    index_dir = tmp_path / "index"
    build_index(small_catalog, index_dir, embedder=embedder, recognize=False)
    return index_dir


def test_top_categories_orders_by_probability():
    probabilities = np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]])
    best = top_categories(probabilities, ["a", "b", "c"], top=2)
    assert best == [[("b", 0.5), ("c", 0.3)], [("a", 0.9), ("b", 0.05)]]


def test_untuned_index_falls_back_to_imagenet_and_names_colours(small_index, small_catalog):
    engine = Engine.open(small_index)
    photo = sorted((small_catalog / "images").glob("*.png"))[0]
    recognition = engine.recognize(photo)
    assert recognition.source == "imagenet"
    assert recognition.category in (*TAXONOMY, UNKNOWN)
    assert sum(p for _, p in recognition.categories) <= 1 + 1e-6
    names = [c.name for c in recognition.colours]
    assert names and set(names) <= {"black", "grey", "white"}  # Fashion-MNIST is greyscale
    assert json.loads(json.dumps(recognition.to_dict()))["colours"][0]["name"] == names[0]
    with pytest.raises(BadImageError):
        engine.recognize(b"not an image")


def test_recognize_then_recommend_on_one_upload_runs_the_model_once(
    small_index, small_catalog, monkeypatch
):
    import onnxruntime

    from stylefinder.recognize.taxonomy import predict_garments

    upload = sorted((small_catalog / "images").glob("*.png"))[5].read_bytes()
    other = Engine.open(small_index)
    expected = other.recommend(upload, k=5)
    inputs = other.embedder.preprocess(upload)[None]
    categories = predict_garments(other.embedder.classify_inputs(inputs))[0]
    engine = Engine(other.store, embedder=other.embedder)  # a fresh engine, same model
    runs: list[int] = []  # images through the model, per run of an ONNX Runtime session
    run = onnxruntime.InferenceSession.run

    def counted(self, outputs, feeds, *args, **kwargs):
        runs.append(len(feeds["pixels"]))
        return run(self, outputs, feeds, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", counted)
    recognition = engine.recognize(upload)
    results = engine.recommend(upload, k=5)
    assert runs == [1]  # one image through the model, for both answers
    assert [(r.id, r.score) for r in results] == [(r.id, r.score) for r in expected]
    assert recognition.source == "imagenet" and recognition.categories == categories
    engine.recommend(b"\x89PNG" + upload[4:] + b"x", k=1)  # other bytes: embedded afresh
    assert runs == [1, 1]


def test_annotation_gives_every_item_colours_usable_as_filters(small_index, tmp_path):
    summary = annotate_index(small_index)
    engine = Engine.open(small_index)
    assert summary.colours == len(engine) == 12 and summary.source == "" and not summary.failed
    colours = [item.metadata["colours"] for item in engine.snapshot.items]
    assert all(colours)
    assert annotate_index(small_index).colours == 0  # done once, not again
    wanted = colours[0].split(",")[-1]
    assert wanted in engine.filter_columns()["colours"]
    red = Image.new("RGB", (64, 64), "white")
    red.paste((200, 20, 20), (16, 8, 48, 56))
    results = engine.recommend(red, k=12, filters={"colours": [wanted]})
    assert results and all(wanted in r.metadata["colours"].split(",") for r in results)
    assert len(results) == sum(wanted in c.split(",") for c in colours)


def test_indexing_names_colours_once_and_keeps_them(small_catalog, embedder, tmp_path):
    index_dir = tmp_path / "index"
    first = build_index(small_catalog, index_dir, embedder=embedder)
    assert first.recognized == 12 and not first.recognition_failed
    before = {item.id: item.metadata["colours"] for item in Engine.open(index_dir).snapshot.items}
    again = build_index(small_catalog, index_dir, embedder=embedder)
    assert again.recognized == 0 and again.unchanged == 12
    after = {item.id: item.metadata["colours"] for item in Engine.open(index_dir).snapshot.items}
    assert after == before


def test_imagenet_categories_come_from_the_embedding_run_and_csv_values_stay(
    small_catalog, embedder, tmp_path, monkeypatch
):
    from stylefinder.embed.onnx import OnnxEmbedder
    from stylefinder.recognize.taxonomy import predict_garments

    images = sorted((small_catalog / "images").glob("*.png"))
    csv = tmp_path / "shop.csv"
    csv.write_text(f"path,colours\nimages/{images[0].name},purple\n")  # the shop's own value

    def second_pass(*args, **kwargs):
        raise AssertionError("categories took a second pass of the model")

    monkeypatch.setattr(OnnxEmbedder, "classify_inputs", second_pass)
    index_dir = tmp_path / "index"
    summary = build_index(
        small_catalog, index_dir, metadata_csv=csv, embedder=embedder, imagenet_categories=True
    )
    monkeypatch.undo()
    assert summary.recognized == 12 and not summary.recognition_failed
    found = {item.path: item.metadata for item in Engine.open(index_dir).snapshot.items}
    assert found[f"images/{images[0].name}"]["colours"] == "purple"
    assert all(found[f"images/{path.name}"]["colours"] for path in images)
    inputs = np.stack([embedder.preprocess(path) for path in images])
    expected = [best[0][0] for best in predict_garments(embedder.classify_inputs(inputs))]
    assert [found[f"images/{path.name}"]["category_pred"] for path in images] == expected
    again = annotate_index(index_dir, imagenet=True)
    assert again.colours == 0 and again.categories == 0  # nothing left to name


def test_tuned_index_uses_its_classifier(small_index, demo_index, small_catalog, capsys):
    train_index, _ = demo_index
    args = ["tune", "--index", str(small_index), "--label-column", "category"]
    assert main([*args, "--train-index", str(train_index), "--epochs", "2"]) == 0
    assert "category_pred from the classifier" in capsys.readouterr().out
    engine = Engine.open(small_index)
    predicted = {item.metadata["category_pred"] for item in engine.snapshot.items}
    assert predicted <= set(CLASS_NAMES)
    photo = sorted((small_catalog / "images").glob("*.png"))[3]
    recognition = engine.recognize(photo)
    assert recognition.source == "classifier" and len(recognition.categories) == 3
    assert recognition.category in CLASS_NAMES
    assert engine.category_filter(recognition) == {"category": [recognition.category]}

    assert main(["recognize", str(photo), "--index", str(small_index), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["category"] == recognition.category and printed["source"] == "classifier"


def test_cli_shopper_commands(small_index, tmp_path, capsys):
    engine = Engine.open(small_index)
    ids = [item.id for item in engine.snapshot.items]
    index = ["--index", str(small_index)]
    assert main(["for-user", "ann", *index, "-k", "3"]) == 0
    assert "new shopper" in capsys.readouterr().out
    assert main(["user", "event", "ann", ids[0], "--kind", "like", *index]) == 0
    assert f"ann like {ids[0]}" in capsys.readouterr().out
    rows = ["user_id,item_id,kind", f"ann,{ids[1]},purchase", "ann,no-such-item,like", "ann,x"]
    (tmp_path / "events.csv").write_text("\n".join(rows) + "\n")
    assert main(["user", "import", str(tmp_path / "events.csv"), *index]) == 0
    out = capsys.readouterr().out
    assert "imported 1 events, rejected 2" in out and "line 3" in out and "line 4" in out
    assert main(["for-user", "ann", *index, "-k", "5", "--json"]) == 0
    results = [r["id"] for r in json.loads(capsys.readouterr().out)["results"]]
    assert len(results) == 5 and ids[1] not in results  # bought items never come back
    assert main(["user", "event", "ann", "no-such-item", "--kind", "like", *index]) == 1
    assert "no-such-item" in capsys.readouterr().err
    assert main(["user", "delete", "ann", *index]) == 0
    assert "2 events" in capsys.readouterr().out
    assert Engine.open(small_index).events.events("ann") == []
