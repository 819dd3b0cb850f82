"""`stylefinder index --feed` and its `--every` loop (`sync_every`), against the loopback feed
server: the summary printed, a second run that downloads nothing (counted on the server), the
removal guard asked as for folders, rounds that fail and the loop that goes on."""

from __future__ import annotations

import json

import pytest
from feedserver import DATA, PRODUCTS, status_route

import stylefinder.jobs.feed
from stylefinder.cli import main
from stylefinder.cli.parser import interval
from stylefinder.index.store import IndexStore
from stylefinder.jobs.feed import FeedSyncRunningError, SyncRound, sync_every, sync_feed

PHOTOS = sum(PRODUCTS.values())


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _items(index_dir) -> set[str]:
    return {item.id for item in IndexStore.open(index_dir).snapshot().items}


def _csv_feed(server, rows: list[tuple[str, str]], path: str = "/feed.csv") -> str:
    lines = ["id,title,price,image_url"] + [f"{pid},{pid} title,10.00,{url}" for pid, url in rows]
    return server.serve_feed(path, "\n".join(lines) + "\n")


def test_index_feed_prints_the_summary_and_a_second_run_downloads_nothing(
    capsys, feed_server, tmp_path
):
    shopify = feed_server.serve_feed(
        "/products_export.csv", (DATA / "shopify_products.csv").read_text()
    )
    index = tmp_path / "index"
    code, out, err = _run(
        capsys, "index", "--feed", shopify, "--index", index, "--no-progress", "--no-recognize"
    )
    assert code == 0, err
    assert f"feed {shopify} (shopify): 10 products, {PHOTOS} photos: {PHOTOS} downloaded" in out
    assert "0 not modified, 0 unchanged, 0 failed, 0 removed" in out
    assert "feed problems (1):" in out  # the sample's one bad row
    assert f"indexed {PHOTOS} items in {index}: {PHOTOS} embedded" in out
    assert set(feed_server.bodies("/images/").values()) == {1}
    assert "dress-wrap#2" in _items(index)

    feed_server.reset()
    code, out, err = _run(
        capsys, "index", "--feed", shopify, "--index", index, "--no-progress", "--no-recognize"
    )
    assert code == 0, err
    assert feed_server.bodies("/images/") == {}  # nothing downloaded: 304s only
    assert sum(n for (p, s), n in feed_server.hits.items() if s == 304) == PHOTOS
    assert f"0 downloaded, {PHOTOS} not modified, 0 unchanged, 0 failed, 0 removed" in out
    assert "0 embedded" in out and f"{PHOTOS} unchanged" in out


def test_failures_by_reason_and_json(capsys, feed_server, tmp_path):
    s = feed_server
    s.routes["/missing.png"] = status_route(404)
    s.routes["/gone.png"] = status_route(410)
    rows = [(f"p{n}", s.image_url(n)) for n in range(4)]
    rows += [("missing", s.url("/missing.png")), ("gone", s.url("/gone.png"))]
    feed = _csv_feed(s, rows)
    index = tmp_path / "index"
    code, out, _ = _run(capsys, "index", "--feed", feed, "--feed-format", "csv", "--index", index,
                        "--no-progress", "--no-recognize")  # fmt: skip
    assert code == 0
    assert "4 downloaded" in out and "2 failed" in out
    assert "failed by reason: http 404 1, http 410 1 (retried on the next sync)" in out
    assert f"  http 404: {s.url('/missing.png')}" in out
    assert f"  http 410: {s.url('/gone.png')}" in out

    code, out, _ = _run(
        capsys, "index", "--feed", feed, "--index", index, "--json", "--no-recognize"
    )
    summary = json.loads(out)
    assert summary["downloaded"] == 0 and summary["not_modified"] == 4
    assert summary["failed"] == {"http 404": 1, "http 410": 1}
    assert [f["url"] for f in summary["failures"]] == [s.url("/missing.png"), s.url("/gone.png")]
    assert summary["retried"] == 2 and summary["index"]["total"] == 4


def test_removals_over_the_guard_need_allow_removals(capsys, feed_server, tmp_path):
    rows = [(f"p{n}", feed_server.image_url(n)) for n in range(10)]
    index = tmp_path / "index"
    options = ("--index", index, "--no-progress", "--no-recognize")
    assert _run(capsys, "index", "--feed", _csv_feed(feed_server, rows), *options)[0] == 0
    cut = _csv_feed(feed_server, rows[:2])  # a feed cut short: 8 of 10 would go
    code, out, err = _run(capsys, "index", "--feed", cut, *options)  # no terminal to ask
    assert code == 1 and out == ""
    assert "this sync would remove 8 of the index's 10 items (over the 20% limit)" in err
    assert "--allow-removals" in err and "the index was not changed" in err
    assert len(_items(index)) == 10
    assert len(list((index / "feed" / "images").rglob("*.png"))) == 10  # photos put back
    code, out, err = _run(capsys, "index", "--feed", cut, *options, "--allow-removals")
    assert code == 0, err
    assert "8 removed" in out and _items(index) == {"p0#1", "p1#1"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "1h"], "--every re-syncs a product feed"),
        (["--feed", "f.csv", "--meta", "m.csv"], "--meta is for folders"),
    ],
)
def test_options_that_do_not_go_together(capsys, tmp_path, args, message):
    catalog = [] if "--feed" in args else [tmp_path]
    code, _, err = _run(capsys, "index", *catalog, *args, "--index", tmp_path / "ix")
    assert code == 1 and message in err


def test_a_feed_or_a_catalog_not_both(capsys, tmp_path):
    with pytest.raises(SystemExit) as exited:
        main(["index", str(tmp_path), "--feed", "f.csv", "--index", str(tmp_path / "ix")])
    assert exited.value.code == 2
    assert "not allowed with argument catalog" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["index", "--feed", "f.csv", "--index", "ix", "--every", "soon"])
    assert "wants a time such as 30m" in capsys.readouterr().err


def test_intervals():
    assert [interval(t) for t in ("45", "45s", "30m", "6h", "1d", "0.5H")] == [
        45.0,
        45.0,
        1800.0,
        21600.0,
        86400.0,
        1800.0,
    ]
    for bad in ("", "h", "0", "-1h", "6x", "infh"):
        with pytest.raises(Exception, match="wants a"):
            interval(bad)


def test_sync_every_runs_rounds_and_goes_on_after_a_failed_one(
    feed_server, fast_options, fake_embedder, tmp_path
):
    s = feed_server
    rows = [(f"p{n}", s.image_url(n)) for n in range(3)]
    good = "id,title,price,image_url\n" + "".join(f"{p},{p},1.00,{u}\n" for p, u in rows)
    s.serve_feed("/feed.csv", good)
    serving = s.routes["/feed.csv"]
    index = tmp_path / "index"
    rounds: list[SyncRound] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # no waiting; the feed goes down for round 2 only
        sleeps.append(seconds)
        s.routes["/feed.csv"] = status_route(503) if len(sleeps) == 1 else serving

    done = sync_every(
        s.url("/feed.csv"),
        index,
        3600,
        rounds=3,
        sleep=sleep,
        on_round=rounds.append,
        download=fast_options,
        embedder=fake_embedder,
        recognize=False,
    )
    assert done == 3 and [r.number for r in rounds] == [1, 2, 3]
    assert len(sleeps) == 2 and all(0 < t <= 3600 for t in sleeps)  # none after the last
    first, down, third = rounds
    assert first.error is None and first.summary.downloaded == 3
    assert down.summary is None and "cannot download the feed" in str(down.error)
    assert third.error is None and third.summary.not_modified == 3
    assert third.summary.downloaded == 0 and _items(index) == {"p0#1", "p1#1", "p2#1"}


def test_sync_every_rejects_a_non_positive_interval(tmp_path):
    with pytest.raises(ValueError, match="positive"):
        sync_every("f.csv", tmp_path, 0, rounds=1)


def test_one_sync_of_an_index_at_a_time(feed_server, fast_options, fake_embedder, tmp_path):
    index = tmp_path / "index"
    feed = _csv_feed(feed_server, [("p0", feed_server.image_url(0))])
    running = stylefinder.jobs.feed._sync_lock(index)  # held as a running sync holds it
    with running, pytest.raises(FeedSyncRunningError, match="running already"):
        sync_feed(feed, index, download=fast_options, embedder=fake_embedder)
    assert sync_feed(feed, index, download=fast_options, embedder=fake_embedder).downloaded == 1


def test_every_prints_each_round_and_ctrl_c_ends_it(capsys, feed_server, monkeypatch, tmp_path):
    s = feed_server
    feed = _csv_feed(s, [(f"p{n}", s.image_url(n)) for n in range(2)])
    real = stylefinder.jobs.feed.sync_every
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            s.routes["/feed.csv"] = status_route(404)  # round 2: the feed is unreachable
        elif len(sleeps) == 3:
            raise KeyboardInterrupt  # Ctrl-C while waiting for round 4

    def fast_loop(*args, **kwargs):
        return real(*args, sleep=sleep, **kwargs)

    monkeypatch.setattr(stylefinder.jobs.feed, "sync_every", fast_loop)
    code, out, err = _run(capsys, "index", "--feed", feed, "--index", tmp_path / "ix",
                          "--every", "2s", "--no-recognize")  # fmt: skip
    assert code == 0
    assert len(sleeps) == 3 and all(0 <= t <= 2 for t in sleeps)
    assert "round 1:" in out and "2 downloaded" in out and "next sync in" in out
    assert "round 2 failed: cannot download the feed" in out and "http 404" in out
    assert "round 3 failed" in out
    assert "stopped after 3 finished rounds" in err
