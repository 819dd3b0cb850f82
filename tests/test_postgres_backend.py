"""The whole path on a PostgreSQL catalog: `index` into it, then the Engine and the CLI query
it, with the answers of an index directory built from the same photos by the same model."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("psycopg")

from fakes import FakeEmbedder
from stylefinder.cli import main
from stylefinder.engine import Engine
from stylefinder.errors import RemovalGuardError
from stylefinder.index.pg_catalog import PgCatalog
from stylefinder.jobs.build import build_index

ITEMS = 240  # 24 of each of the demo's 10 categories


@pytest.fixture(scope="module")
def photos(demo, tmp_path_factory) -> Path:
    """A catalog folder of 240 demo photos and the demo's metadata CSV."""
    root = tmp_path_factory.mktemp("pg-photos")
    (root / "images").mkdir()
    by_category: dict[str, int] = {}
    rows = (demo.csv_path.read_text().splitlines())[1:]
    kept = ["id,path,category"]
    for row in rows:
        item_id, path, category = row.split(",")
        if by_category.get(category, 0) < ITEMS // 10:
            by_category[category] = by_category.get(category, 0) + 1
            shutil.copy2(demo.root / path, root / "images" / Path(path).name)
            kept.append(f"{item_id},images/{Path(path).name},{category}")
    (root / "catalog.csv").write_text("\n".join(kept) + "\n")
    return root


@pytest.fixture
def url(postgres_url, request) -> str:
    schema = "e2e_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    return f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"


@pytest.fixture
def both(photos, url, tmp_path, fake_index):
    """(PostgreSQL engine, directory engine) over the same photos, embedded by the fake."""
    csv = photos / "catalog.csv"
    into_pg = build_index(photos, url, metadata_csv=csv, embedder=FakeEmbedder())
    into_dir = build_index(photos, tmp_path / "ix", metadata_csv=csv, embedder=FakeEmbedder())
    assert into_pg.embedded == into_dir.embedded == ITEMS and into_pg.total == ITEMS
    return Engine.open(url), Engine.open(tmp_path / "ix")


def _same(pg_results, dir_results) -> None:
    assert [r.id for r in pg_results] == [r.id for r in dir_results]
    for pg, directory in zip(pg_results, dir_results, strict=True):
        assert pg.score == pytest.approx(directory.score, abs=1e-5)
        assert pg.metadata == directory.metadata and pg.path == directory.path


def test_queries_answer_as_the_directory_does(both, demo):
    pg, directory = both
    assert len(pg) == len(directory) == ITEMS
    query = demo.queries[0][0]
    _same(pg.recommend(query, k=8), directory.recommend(query, k=8))
    item_id = pg.browse(limit=1)[0][0].id
    _same(pg.similar(item_id, k=6), directory.similar(item_id, k=6))
    bags = {"category": "bag,SANDAL"}
    _same(pg.recommend(query, k=10, filters=bags), directory.recommend(query, k=10, filters=bags))
    assert {r.metadata["category"] for r in pg.recommend(query, 10, filters=bags)} <= {
        "Bag",
        "Sandal",
    }
    page, total = pg.browse(offset=5, limit=7, filters={"category": "Coat"})
    assert total == ITEMS // 10 and len(page) == 7
    assert all(item.metadata["category"] == "Coat" for item in page)
    assert pg.filter_columns()["category"] == directory.filter_columns()["category"]
    assert pg.item(item_id).metadata == directory.item(item_id).metadata


def test_a_catalog_photo_as_query_is_not_its_own_result(both, photos):
    pg, _ = both
    photo = sorted((photos / "images").iterdir())[3]
    results = pg.recommend(photo, k=5)
    assert len(results) == 5 and photo.name not in {Path(r.path).name for r in results}


def test_events_and_info_live_in_the_database(both, url):
    pg, _ = both
    first = pg.browse(limit=1)[0][0].id
    pg.record_event("ann", first, "like")
    again = Engine.open(url)  # another replica
    assert [e.item_id for e in again.events.events("ann")] == [first]
    info = again.info()
    assert (info.items, info.backbone, info.shoppers, info.events) == (ITEMS, "fake-pixels", 1, 1)
    assert info.size_bytes > ITEMS * info.dim * 4 and "schema e2e_" in info.directory


def test_a_second_run_embeds_nothing_and_the_removal_guard_holds(both, photos, url, tmp_path):
    csv = photos / "catalog.csv"
    again = build_index(photos, url, metadata_csv=csv, embedder=FakeEmbedder())
    assert (again.embedded, again.unchanged, again.total) == (0, ITEMS, ITEMS)
    fewer = tmp_path / "fewer"
    shutil.copytree(photos, fewer)
    for photo in sorted((fewer / "images").iterdir())[: ITEMS // 2]:
        photo.unlink()
    with pytest.raises(RemovalGuardError):
        build_index(fewer, url, metadata_csv=csv, embedder=FakeEmbedder())
    assert len(Engine.open(url)) == ITEMS  # nothing was written
    done = build_index(fewer, url, metadata_csv=csv, embedder=FakeEmbedder(), allow_removals=True)
    assert done.removed == ITEMS // 2 and len(Engine.open(url)) == ITEMS // 2


def test_the_cli_takes_a_url_or_the_environment(both, url, capsys, monkeypatch):
    item_id = both[0].browse(limit=1)[0][0].id
    ask = ["recommend", "--item", item_id, "-k", "3", "--json"]
    assert main([*ask, "--index", url]) == 0
    by_flag = json.loads(capsys.readouterr().out)["results"]
    monkeypatch.setenv("STYLEFINDER_DATABASE_URL", url)
    assert main(ask) == 0
    assert json.loads(capsys.readouterr().out)["results"] == by_flag
    assert len(by_flag) == 3 and item_id not in {r["id"] for r in by_flag}
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == ITEMS


def test_an_unknown_schema_says_how_to_make_a_catalog(postgres_url, capsys):
    url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema=nothing_here"
    assert main(["info", "--index", url]) == 1
    assert "stylefinder index" in capsys.readouterr().err


def test_export_to_postgres_and_back_keeps_items_vectors_and_events(
    photos, url, tmp_path, fake_index, capsys
):
    csv = photos / "catalog.csv"
    build_index(photos, tmp_path / "ix", metadata_csv=csv, embedder=FakeEmbedder())
    directory = Engine.open(tmp_path / "ix")
    liked = [item.id for item in directory.browse(limit=3)[0]]
    directory.record_events("ann", [{"item_id": i, "kind": "like"} for i in liked])
    directory.events.create_token("ann")

    assert main(["export", "--index", str(tmp_path / "ix"), "--to", url, "--json"]) == 0
    there = json.loads(capsys.readouterr().out)
    assert (there["items"], there["shoppers"], there["events"]) == (ITEMS, 1, 3)
    assert there["tokens_not_copied"] == 1
    assert main(["export", "--index", url, "--to", str(tmp_path / "back")]) == 0
    assert f"copied {ITEMS} items and 3 events of 1 shoppers" in capsys.readouterr().out

    pg, back = Engine.open(url), Engine.open(tmp_path / "back")
    original = directory.snapshot
    returned = back.snapshot
    for item in original.items:
        assert returned.vector_of(item.id).tobytes() == original.vector_of(item.id).tobytes()
        assert back.item(item.id).metadata == item.metadata
        assert back.item(item.id).hash == item.hash
    query = liked[0]
    _same(pg.similar(query, k=5), directory.similar(query, k=5))
    _same(back.similar(query, k=5), directory.similar(query, k=5))
    assert [e.item_id for e in back.events.events("ann")] == liked
    assert back.image_path(back.item(query)) == directory.image_path(directory.item(query))

    # never over a catalog
    assert main(["export", "--index", str(tmp_path / "ix"), "--to", url]) == 1
    assert "already holds a catalog" in capsys.readouterr().err


def test_a_killed_index_run_keeps_its_commits_and_resumes(demo, url, tmp_path, embedder):
    catalog = tmp_path / "catalog"
    (catalog / "images").mkdir(parents=True)
    for path in sorted((demo.root / "images").glob("*.png"))[:256]:
        shutil.copy2(path, catalog / "images" / path.name)
    command = [
        sys.executable, "-m", "stylefinder.cli", "index", str(catalog), "--index", url,
        "--checkpoint-seconds", "0", "--batch-size", "16", "--no-progress",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, watched = time.monotonic() + 120, None
    while time.monotonic() < deadline and process.poll() is None:
        if watched is None and PgCatalog.exists(url):
            watched = PgCatalog.open(url)
        if watched is not None and watched.generation() >= 2:
            break
        time.sleep(0.02)
    assert process.poll() is None, "indexing finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()

    engine = Engine.open(url)  # what was committed is there, and only that
    done = len(engine)
    assert 0 < done < 256
    items, _ = engine.browse(limit=300)
    for item in (items[0], items[-1]):  # vectors belong to their items
        stored = engine.store.vectors_of([item.id])[0]
        expected = embedder.embed_one(catalog / item.path)
        np.testing.assert_allclose(stored, expected, atol=1e-5)
    summary = build_index(catalog, url, embedder=embedder)
    assert summary.embedded == 256 - done and summary.total == 256  # nothing embedded twice
    watched.close()


@pytest.mark.parametrize("command", [["restore", "--yes"]])
def test_directory_only_commands_say_so_on_a_url(both, url, capsys, command):
    assert main([*command, "--index", url]) == 1
    err = capsys.readouterr().err
    assert "index directories only" in err and "stylefinder export" in err


def test_display_settings_live_in_the_database(both, url, capsys):
    pg, _ = both
    assert main(["config", "set", "title=category", "facets=category", "--index", url]) == 0
    capsys.readouterr()
    assert main(["config", "show", "--json", "--index", url]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["title"] == "category" and shown["facets"] == ["category"]
    assert main(["config", "set", "price=no_such_column", "--index", url]) == 2
    assert "no metadata column 'no_such_column'" in capsys.readouterr().err
    pg.reload()  # another process (the API, the app) reads them from the catalog
    assert json.loads(pg.view.state["display"])["title"] == "category"


def test_personal_recommendations_are_the_directorys(both):
    pg, directory = both
    items = [item.id for item in directory.browse(limit=ITEMS)[0]]
    moment = 1_780_000_000.0
    history = [
        {"item_id": items[3], "kind": "like", "timestamp": moment - 86_400},
        {"item_id": items[40], "kind": "purchase", "timestamp": moment - 3_600},
        {"item_id": items[41], "kind": "view", "timestamp": moment - 60},
        {"item_id": items[120], "kind": "dislike", "timestamp": moment - 60},
    ]
    for engine in both:
        engine.record_events("ann", history)
    for options in ({}, {"filters": {"category": "Bag,Coat"}}, {"diversity": 0.0}):
        mine = pg.recommend_for_user("ann", k=8, now=moment, **options)
        _same(mine, directory.recommend_for_user("ann", k=8, now=moment, **options))
        assert len(mine) == 8 and not {items[3], items[40], items[120]} & {r.id for r in mine}
    examples = ([items[3], items[50]], [items[120]])
    _same(
        pg.recommend_from_examples(*examples, k=6),
        directory.recommend_from_examples(*examples, k=6),
    )
    cold = pg.recommend_for_user("nobody-yet", k=5, filters={"category": "Sandal"})
    assert len(cold) == 5 and {r.metadata["category"] for r in cold} == {"Sandal"}


def test_the_cold_start_puts_popular_items_first(both):
    pg, _ = both
    items = [item.id for item in pg.browse(limit=ITEMS)[0]]
    for n, user in enumerate(["a", "b", "c"]):
        pg.record_event(user, items[7], "purchase")
        pg.record_event(user, items[9 + n], "view")
    first = pg.recommend_for_user("new", k=5, diversity=0.0)
    assert first[0].id == items[7] and len(first) == 5


def test_eval_on_a_url_scores_as_on_the_directory(both, url, tmp_path, capsys):
    from stylefinder.evaluate.retrieval import evaluate_index

    _, directory = both
    on_pg = evaluate_index(url, label_column="category", ks=(1, 5))
    on_dir = evaluate_index(directory.store.directory, label_column="category", ks=(1, 5))
    assert on_pg.items == on_dir.items == ITEMS and not on_pg.tuned
    assert on_pg.metrics == pytest.approx(on_dir.metrics, abs=1e-6)
    report = tmp_path / "report"
    command = ["eval", "--index", url, "--label-column", "category", "--report", str(report)]
    assert main(command) == 0
    assert "leave-one-out over 240 items" in capsys.readouterr().out
    written = json.loads((report / "report.json").read_text())
    assert written["index"]["directory"].endswith(f"(schema {url.rsplit('schema=', 1)[1]})")
    assert (report / "samples.png").stat().st_size > 0


def test_eval_personalization_on_a_url_scores_as_on_the_directory(both, url, tmp_path):
    from stylefinder.evaluate.personalization import evaluate_personalization

    pg, directory = both
    options = {"users": 30, "sweep": (0.0,), "report_dir": None}
    on_pg = evaluate_personalization(pg, "category", **options)
    on_dir = evaluate_personalization(directory, "category", **options)
    assert on_pg["index"]["items"] == on_dir["index"]["items"] == ITEMS
    assert on_pg["index"]["directory"].endswith(f"(schema {url.rsplit('schema=', 1)[1]})")
    for method, metrics in on_dir["methods"].items():
        assert on_pg["methods"][method] == pytest.approx(metrics, abs=1e-6), method
    command = ["eval", "personalization", "--index", url, "--label-column", "category"]
    assert main([*command, "--users", "20", "--report", str(tmp_path / "report")]) == 0


def test_a_tuned_catalog_searches_its_tuned_space_as_the_directory_does(both, url):
    """`tune` on a URL: the projection and the projected vectors live in the database, and
    queries search them, with the directory's answers for the same labels."""
    from stylefinder.index.pg_search import VectorTable, search
    from stylefinder.jobs.tune import tune_index
    from stylefinder.recommend.pg_tuned import TunedSpace

    _, directory = both
    for location in (url, directory.store.directory):
        tune_index(location, label_column="category", method="linear", dim=16)
    pg, tuned_dir = Engine.open(url), Engine.open(directory.store.directory)
    assert pg.projection is not None and pg.projection.dim == tuned_dir.projection.dim == 16
    for item_id in sorted(pg.store.ids())[::40]:
        mine, theirs = pg.similar(item_id, k=5), tuned_dir.similar(item_id, k=5)
        assert [r.id for r in mine] == [r.id for r in theirs], item_id
        assert [r.score for r in mine] == pytest.approx([r.score for r in theirs], abs=1e-4)
    space = TunedSpace.of(pg.store)
    table = VectorTable(space.sql(pg.store), space.vector_type, space.dim)
    query = pg.projection.apply(pg.store.vectors_of(pg.store.ids()[:1])[0])
    walked = search(pg.store, query, 10, exact=False, space=table)  # through its HNSW index
    scanned = search(pg.store, query, 10, exact=True, space=table)
    assert [i.id for i, _ in walked] == [i.id for i, _ in scanned]
    with pg.store.connection() as conn, conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        table_name = f"{pg.store.target.schema}.{space.table}"
        plan = conn.execute(
            f"EXPLAIN SELECT 1 FROM {table_name} ORDER BY tuned <=> %s::vector LIMIT 5",
            (query.tolist(),),
        ).fetchall()
    assert "Index Scan using" in str(plan)  # the tuned table has its HNSW index


def test_writes_after_tuning_reach_the_tuned_space_and_reset_drops_it(both, url, photos):
    from stylefinder.jobs.tune import reset_projection, tune_index
    from stylefinder.recommend.pg_tuned import TunedSpace

    pg, _ = both
    tune_index(url, label_column="category", method="linear", dim=16)
    gone = sorted(pg.store.ids())[0]
    with pg.store.writer() as writer:  # a removal and a copy of an item under a new id
        writer.remove(gone)
        item = pg.store.item(sorted(pg.store.ids())[1])
        copy = type(item)("copy-1", item.path, "another-hash", metadata=dict(item.metadata))
        writer.put(copy, pg.store.vectors_of([item.id])[0])
    engine = Engine.open(url)
    found = [r.id for r in engine.similar(item.id, k=3)]
    assert found[0] == "copy-1"  # written after tuning, found in the tuned space
    assert gone not in [r.id for r in engine.similar(item.id, k=ITEMS - 1)]
    space = TunedSpace.of(pg.store)
    with pg.store.connection() as conn:
        table_name = f"{pg.store.target.schema}.{space.table}"
        rows = conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE item_id = %s) FROM {table_name}", (gone,)
        ).fetchone()
    assert rows == (len(pg.store), 0)  # one row per item; the removed item's went with it
    assert reset_projection(url) is True
    assert TunedSpace.of(pg.store) is None and Engine.open(url).projection is None
    with pg.store.connection() as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE 'tuned%%'",
            (pg.store.target.schema,),
        ).fetchone()[0]
    assert left == 0


def test_the_tune_command_takes_a_url(both, url, capsys):
    assert main(["tune", "--index", url, "--label-column", "category", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "queries on" in out and "use it now" in out
    engine = Engine.open(url)
    assert engine.projection is not None and engine.projection.classifier is not None
    items = engine.store.items(engine.store.ids())
    assert all(item.metadata.get("category_pred") for item in items)  # named by its classifier
    right = sum(item.metadata["category_pred"] == item.metadata["category"] for item in items)
    assert right / len(items) > 0.5
    assert main(["tune", "--index", url, "--reset"]) == 0
    assert "projection removed" in capsys.readouterr().out


def test_text_and_hybrid_search_on_a_url(photos, url, tmp_path):
    """Full-text search in PostgreSQL (tsvector, GIN) finds what the titles say, as the
    directory's FTS5 does; filters and a photo combine with it."""
    import csv as csv_module
    import re

    rows = list(csv_module.DictReader((photos / "catalog.csv").open()))
    words = ("Navy", "Red", "White", "Black")
    for number, row in enumerate(rows):
        row["colours"] = words[number % 4].lower()
        row["title"] = f"{words[number % 4]} {('linen', 'wool')[number // 4 % 2]} {row['category']}"
    titled = tmp_path / "titled.csv"
    with titled.open("w", newline="") as out:
        writer = csv_module.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    build_index(photos, url, metadata_csv=titled, embedder=FakeEmbedder())
    build_index(photos, tmp_path / "ix", metadata_csv=titled, embedder=FakeEmbedder())
    by_id = {row["id"]: row for row in rows}

    def title_words(item_id: str) -> set[str]:
        return set(re.findall(r"\w+", by_id[item_id]["title"].casefold()))

    with_all = {i for i in by_id if {"navy", "linen", "shirt"} <= title_words(i)}
    for engine in (Engine.open(url), Engine.open(tmp_path / "ix")):
        found = engine.search("navy linen shirts", k=len(with_all) + 3, expand=False)
        assert {r.id for r in found[: len(with_all)]} == with_all
        dresses = engine.search("wool", k=100, filters={"category": "Dress"}, expand=False)
        assert {r.id for r in dresses} == {
            i for i in by_id if by_id[i]["category"] == "Dress" and "wool" in title_words(i)
        }
        blue = engine.search("blue", k=20, expand=False)  # navy is in the blue family
        assert blue and all(by_id[r.id]["colours"] == "navy" for r in blue)
        expanded = engine.search("sandal", k=40)
        assert {r.id for r in expanded[:24]} == {i for i in by_id if "sandal" in title_words(i)}
        photo = photos / by_id[next(iter(with_all))]["path"]
        engine._embedder = FakeEmbedder()
        red = engine.search("red", photo, k=5)
        assert all(by_id[r.id]["colours"] == "red" for r in red)
