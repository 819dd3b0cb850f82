"""The command line: JSON output, summaries and clear errors (exit status 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes import FAKE_BACKBONE, FAKE_SPEC
from stylefinder.cli import main


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_recommend_json(capsys, fake_index, demo):
    index_dir = fake_index
    query, _ = demo.queries[0]
    code, out, _ = _run(capsys, "recommend", query, "--index", index_dir, "--json")
    assert code == 0
    results = json.loads(out)["results"]
    assert len(results) == 5
    assert set(results[0]) == {"id", "path", "score", "metadata"}
    assert results[0]["metadata"]["category"]
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_more_like_this_and_k(capsys, fake_index):
    index_dir = fake_index
    code, out, _ = _run(
        capsys,
        "recommend",
        "--item",
        "fmnist-test-00000",
        "--index",
        index_dir,
        "-k",
        "3",
        "--json",
    )
    ids = [r["id"] for r in json.loads(out)["results"]]
    assert code == 0 and len(ids) == 3 and "fmnist-test-00000" not in ids


def test_filters(capsys, fake_index):
    index_dir = fake_index
    code, out, _ = _run(
        capsys,
        "recommend",
        "--item",
        "fmnist-test-00000",
        "--index",
        index_dir,
        "--filter",
        "category=Bag",
        "--filter",
        "category=Sandal",
        "--json",
    )
    categories = {r["metadata"]["category"] for r in json.loads(out)["results"]}
    assert code == 0 and categories <= {"Bag", "Sandal"} and len(json.loads(out)["results"]) == 5
    code, _, err = _run(
        capsys,
        "recommend",
        "--item",
        "fmnist-test-00000",
        "--index",
        index_dir,
        "--filter",
        "category",
    )
    assert code == 2 and "COLUMN=VALUE" in err
    item = ["recommend", "--item", "fmnist-test-00000", "--index", index_dir]
    code, out, err = _run(capsys, *item, "--filter", "nosuchcol=x")
    assert code == 2 and out == "" and "'nosuchcol'" in err and "category, colours" in err
    code, out, _ = _run(capsys, *item, "--filter", "category=bag,SANDAL", "--json")
    categories = {r["metadata"]["category"] for r in json.loads(out)["results"]}
    assert code == 0 and categories <= {"Bag", "Sandal"} and len(json.loads(out)["results"]) == 5


def test_human_output_and_info(capsys, fake_index, demo):
    index_dir = fake_index
    code, out, _ = _run(capsys, "recommend", demo.queries[0][0], "--index", index_dir)
    assert code == 0 and out.count("category=") == 5
    code, out, _ = _run(capsys, "info", "--index", index_dir, "--json")
    info = json.loads(out)
    assert code == 0 and info["items"] == 1000 and info["backbone"] == FAKE_BACKBONE
    assert info["dim"] == FAKE_SPEC.dim


def test_info_shows_tuning_columns_shoppers_and_size(capsys, fake_index, tmp_path):
    import shutil

    from stylefinder.engine import Engine

    source = fake_index
    shutil.copytree(source, tmp_path / "ix")
    engine = Engine.open(tmp_path / "ix")
    first, second = engine.snapshot.items[0].id, engine.snapshot.items[1].id
    engine.record_event("ann", first, "like")
    engine.record_event("ann", second, "view")
    engine.record_event("bob", first, "purchase")
    code, out, _ = _run(capsys, "info", "--index", tmp_path / "ix", "--json")
    info = json.loads(out)
    assert code == 0 and info["tuned"] is None and (info["shoppers"], info["events"]) == (2, 3)
    columns = {c["name"]: c for c in info["columns"]}
    assert columns["category"]["kind"] == "category" and columns["category"]["distinct"] == 10
    assert columns["category"]["filled"] == 1000 and "colours" in columns
    assert info["size_bytes"] > 1000 * FAKE_SPEC.dim * 4
    code, out, _ = _run(capsys, "info", "--index", tmp_path / "ix")
    assert "tuned" in out and "stylefinder tune" in out and "MB)" in out
    assert "columns:" in out and "category  category" in out


def test_index_ann_builds_a_graph_that_info_shows_and_later_runs_keep(
    capsys, demo_index, demo, tmp_path
):
    import shutil

    source, _ = demo_index
    shutil.copytree(source, tmp_path / "ix")
    index = tmp_path / "ix"
    meta = ["--meta", demo.csv_path, "--no-progress"]
    code, out, err = _run(capsys, "index", demo.root, "--index", index, "--ann", "hnsw", *meta)
    assert code == 0, err
    code, out, _ = _run(capsys, "info", "--index", index, "--json")
    search = json.loads(out)["search"]
    assert search["kind"] == "hnsw" and search["nodes"] == 1000
    assert search["recall_at_10"] >= 0.98 and search["search_width"] > 0
    code, out, _ = _run(capsys, "info", "--index", index)
    assert "hnsw graph (faiss" in out and "recall@10" in out
    ask = ["recommend", "--item", "fmnist-test-00000", "--json", "--index"]
    graph_ids = [r["id"] for r in json.loads(_run(capsys, *ask, index)[1])["results"]]
    exact_ids = [r["id"] for r in json.loads(_run(capsys, *ask, source)[1])["results"]]
    assert "fmnist-test-00000" not in graph_ids and len(set(graph_ids) & set(exact_ids)) >= 4
    _run(capsys, "index", demo.root, "--index", index, *meta)  # no --ann: the graph stays
    code, out, _ = _run(capsys, "info", "--index", index, "--json")
    assert json.loads(out)["search"]["kind"] == "hnsw"
    _run(capsys, "index", demo.root, "--index", index, "--ann", "exact", *meta)
    code, out, _ = _run(capsys, "info", "--index", index)
    assert "exact (every item scored" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["recommend", "--item", "nope"], "no item 'nope'"),
        (["recommend"], "either an IMAGE or --item"),
        (["recommend", "missing.jpg"], "not found"),
    ],
)
def test_errors_exit_1_with_a_message(capsys, fake_index, args, message):
    index_dir = fake_index
    code, out, err = _run(capsys, *args, "--index", index_dir)
    assert code == 1 and message in err and out == ""


@pytest.mark.parametrize("command", ["info", "recommend", "app", "serve"])
def test_missing_index(capsys, tmp_path: Path, command):
    extra = ["--item", "x"] if command == "recommend" else []
    code, _, err = _run(capsys, command, "--index", tmp_path / "none", *extra)
    assert code == 1 and "no index at" in err


def test_index_prints_a_summary_with_skipped_files(capsys, small_catalog: Path, tmp_path: Path):
    (small_catalog / "images" / "broken.jpg").write_bytes(b"\xff\xd8broken")
    code, out, _ = _run(capsys, "index", small_catalog, "--index", tmp_path / "ix", "--no-progress")
    assert code == 0
    assert "indexed 12 items" in out and "skipped 1 files" in out and "broken.jpg" in out
    code, out, _ = _run(capsys, "index", small_catalog, "--index", tmp_path / "ix", "--json")
    summary = json.loads(out)
    assert summary["embedded"] == 0 and summary["unchanged"] == 12


def test_demo_data(capsys, tmp_path: Path):
    code, out, _ = _run(capsys, "demo-data", tmp_path / "d", "--queries", tmp_path / "q")
    assert code == 0 and "wrote 1000 images" in out
    lines = (tmp_path / "d" / "catalog.csv").read_text().splitlines()
    assert lines[0] == "id,path,category" and len(lines) == 1001
    assert len(list((tmp_path / "q").glob("*.png"))) == 30


def test_config_set_and_show_display_settings(capsys, fake_index, tmp_path):
    import shutil

    source = fake_index
    shutil.copytree(source, tmp_path / "ix")
    index = ["--index", tmp_path / "ix"]
    code, out, _ = _run(capsys, "config", "show", *index, "--json")
    assert code == 0 and json.loads(out)["facets"] == "auto: category, colours"
    code, out, _ = _run(capsys, "config", "set", "title=category", "hidden=colours", *index)
    assert code == 0 and "title   category" in out
    code, out, _ = _run(capsys, "config", "show", *index, "--json")
    shown = json.loads(out)
    assert shown["title"] == "category" and shown["hidden"] == ["colours"]
    code, _, err = _run(capsys, "config", "set", "price=nosuch", *index)
    assert code == 2 and "'nosuch'" in err and "category, colours" in err
    code, _, err = _run(capsys, "config", "set", "colour=red", *index)
    assert code == 1 and "KEY=VALUE" in err


def test_recognize_without_a_classifier_says_what_tune_gives(capsys, fake_index, demo):
    index_dir = fake_index
    code, out, _ = _run(capsys, "recognize", demo.queries[0][0], "--index", index_dir)
    assert code == 0 and "ImageNet" in out
    assert f"stylefinder tune --index {index_dir} --label-column" in out
