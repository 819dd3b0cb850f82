"""Search by words, and by words with a photo, on the demo catalog with titles made from its
labels: known answers computed from the titles, not from the search."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sqlite3

import pytest

from fakes import FakeEmbedder
from stylefinder.engine import Engine
from stylefinder.jobs.build import build_index
from stylefinder.recommend.text_query import TextQuery

COLOURS = [("Navy", "navy"), ("Red", "red"), ("White", "white"), ("Black", "black")]
MATERIALS = ["linen", "cotton", "wool", "denim", "silk"]


def title_words(title: str) -> set[str]:
    return set(re.findall(r"\w+", title.casefold()))


@pytest.fixture(scope="module")
def titled(demo, tmp_path_factory):
    """(index directory, rows of the CSV by id): the demo catalog with a title
    "<Colour> <material> <category>", its category as `label` and a `colours` column per item;
    every 7th item has none of these (an item that only its look can find; its category is
    kept as `truth`, not written)."""
    root = tmp_path_factory.mktemp("titled")
    rows = {}
    with open(demo.csv_path, newline="") as source:
        for number, row in enumerate(csv.DictReader(source)):
            word, colour = COLOURS[number % 4]
            material = MATERIALS[(number // 4) % 5]
            untitled = number % 7 == 6
            row["title"] = "" if untitled else f"{word} {material} {row['category']}"
            row["colours"] = "" if untitled else colour
            row["truth"] = row.pop("category")
            row["label"] = "" if untitled else row["truth"]  # no word of it when untitled
            rows[row["id"]] = row
    csv_path = root / "titled.csv"
    with open(csv_path, "w", newline="") as out:
        columns = ["id", "path", "label", "title", "colours"]
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows.values())
    index_dir = root / "index"
    build_index(demo.root, index_dir, metadata_csv=csv_path, embedder=FakeEmbedder())
    return index_dir, rows


def open_engine(index_dir) -> Engine:
    return Engine.open(index_dir, embedder=FakeEmbedder())


def test_items_with_every_word_come_first(titled):
    index_dir, rows = titled
    with_all = {i for i, r in rows.items() if {"navy", "linen", "shirt"} <= title_words(r["title"])}
    assert len(with_all) >= 3  # Shirt and T-shirt/top items, navy and linen
    results = open_engine(index_dir).search("navy linen shirts", k=len(with_all) + 5)
    assert {r.id for r in results[: len(with_all)]} == with_all
    # the rest match fewer of the words
    assert all(title_words(rows[r.id]["title"]) & {"navy", "linen", "shirt"} for r in results)


def test_filters_apply_to_words(titled):
    index_dir, rows = titled
    results = open_engine(index_dir).search("linen", k=50, filters={"label": "Dress"}, expand=False)
    expected = {i for i, r in rows.items() if r["label"] == "Dress" and "linen" in r["title"]}
    assert {r.id for r in results} == expected


def test_a_colour_family_finds_its_shades_in_the_colours_column(titled):
    index_dir, rows = titled
    results = open_engine(index_dir).search("blue coat", k=10, expand=False)
    # no title says "blue": the navy coats match both words (navy is in the blue family)
    navy_coats = {i for i, r in rows.items() if r["colours"] == "navy" and r["label"] == "Coat"}
    assert {r.id for r in results} <= {i for i, r in rows.items() if r["colours"] == "navy"} | {
        i for i, r in rows.items() if "coat" in title_words(r["title"])
    }
    assert {r.id for r in results[:5]} <= navy_coats


def test_words_alone_are_expanded_by_the_look_of_their_best_matches(titled):
    index_dir, rows = titled
    engine = open_engine(index_dir)
    matching = {i for i, r in rows.items() if "sandal" in title_words(r["title"])}
    only_words = engine.search("sandal", k=len(matching) + 10, expand=False)
    assert {r.id for r in only_words} == matching
    expanded = engine.search("sandal", k=len(matching) + 30)
    assert {r.id for r in expanded[: len(matching)]} == matching  # every match first
    found_by_look = [r.id for r in expanded if r.id not in matching]
    assert len(found_by_look) == 30
    untitled_sandals = [i for i in found_by_look if rows[i]["truth"] == "Sandal"]
    by_chance = (
        30
        * sum(r["truth"] == "Sandal" for r in rows.values() if not r["title"])
        / (len(rows) - len(matching))
    )
    # the fake embedder's pixels find about 15 times what chance would (7 vs 0.5)
    assert len(untitled_sandals) >= max(4, 5 * by_chance), (untitled_sandals, by_chance)


def test_like_this_photo_but_in_red(titled, demo):
    index_dir, rows = titled
    engine = open_engine(index_dir)
    query_id = next(i for i, r in rows.items() if r["colours"] == "navy" and r["label"] == "Coat")
    photo = demo.root / rows[query_id]["path"]
    red_by_look = engine.recommend(photo, k=20, filters={"colours": "red"})
    results = engine.search("red", photo, k=5)
    assert query_id not in {r.id for r in results}
    assert all(rows[r.id]["colours"] == "red" for r in results), [r.id for r in results]
    assert len({r.id for r in results} & {r.id for r in red_by_look[:10]}) >= 4
    # the photo alone ranks by look only
    assert [r.id for r in engine.search(image=photo, k=5)] == [
        r.id for r in engine.recommend(photo, k=5)
    ]


def test_text_weight_moves_the_ranking_between_words_and_look(titled, demo):
    index_dir, rows = titled
    engine = open_engine(index_dir)
    photo = demo.root / next(r["path"] for r in rows.values() if r["label"] == "Trouser")
    by_words = engine.search("sandal", photo, k=5, text_weight=1.0)
    assert all("sandal" in title_words(rows[r.id]["title"]) for r in by_words)
    by_look = engine.search("sandal", photo, k=5, text_weight=0.0)
    assert [r.id for r in by_look] == [r.id for r in engine.recommend(photo, k=5)]
    with pytest.raises(ValueError, match="between 0 and 1"):
        engine.search("sandal", text_weight=1.5)


def test_writes_and_an_old_manifest_keep_the_words_current(titled, tmp_path, demo):
    index_dir = tmp_path / "index"
    shutil.copytree(titled[0], index_dir)
    engine = open_engine(index_dir)
    image = (demo.root / "images" / "fmnist-test-00000.png").read_bytes()
    engine.add_item("new-1", image, {"title": "Mustard corduroy jacket"})
    assert [r.id for r in engine.search("corduroy", k=3, expand=False)] == ["new-1"]
    engine.remove_item("new-1")
    assert engine.search("corduroy", k=3, expand=False) == []
    # an index made before full-text search: its words are filled when it is opened
    with sqlite3.connect(index_dir / "manifest.sqlite") as con:
        con.executescript(
            "DROP TRIGGER item_words_insert; DROP TRIGGER item_words_delete; "
            "DROP TRIGGER item_words_update; DROP TABLE item_words;"
        )
    again = open_engine(index_dir)
    assert len(again.search("linen", k=1000, expand=False)) == sum(
        "linen" in r["title"] for r in titled[1].values()
    )


def test_queries_without_words_are_refused():
    with pytest.raises(ValueError, match="no word"):
        TextQuery.parse("the, and ...")
    assert TextQuery.parse('shirt" OR "x').fts_expression() == '"shirt" OR "x"'


def test_the_search_command(titled, capsys):
    from stylefinder.cli import main

    index_dir = titled[0]
    args = ["search", "linen dress", "--index", str(index_dir), "-k", "3", "--json"]
    assert main([*args, "--filter", "label=Dress", "--no-expand"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 3
    assert all(r["metadata"]["title"].split()[1:] == ["linen", "Dress"] for r in results)
    assert main(["search", "--index", str(index_dir)]) != 0
    assert "give words to search for" in capsys.readouterr().err


def test_eval_scores_full_text_search_of_the_titles(titled, capsys, tmp_path):
    from stylefinder.cli import main

    rows, index_dir = titled[1], tmp_path / "index"
    shutil.copytree(titled[0], index_dir)
    args = ["eval", "--index", str(index_dir), "--label-column", "label", "--json"]
    assert main([*args, "--title-column", "title", "--k", "1,10"]) == 0
    text = json.loads(capsys.readouterr().out)["text_metrics"]
    labeled = [r["label"] for r in rows.values() if r["label"]]
    names = sorted(set(labeled))
    # every category name is found in its own titles first ("Shirt" before "T-shirt/top":
    # the shorter title), so precision is 1 and recall is k over the category's size
    assert text["queries"] == len(names) == 10
    assert text["precision@1"] == text["precision@10"] == 1.0
    expected = sum(min(10, labeled.count(n)) / labeled.count(n) for n in names) / len(names)
    assert text["recall@10"] == pytest.approx(expected, abs=1e-4)
    # the display settings' title is the default title column
    assert main(["config", "set", "title=title", "--index", str(index_dir)]) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["title_column"] == "title"
