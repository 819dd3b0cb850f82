"""Indexing a folder: incremental re-runs, added/changed/removed files, bad files, crashes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagefactory import bomb_png
from stylefinder import Engine, IndexStateError, build_index
from stylefinder.catalog.demo import CLASS_NAMES
from stylefinder.index.store import IndexStore


def test_demo_index_is_complete(demo_index, demo):
    index_dir, summary = demo_index
    assert summary.embedded == summary.total == demo.count == 1000
    assert summary.skipped == [] and summary.metadata_problems == []
    snap = IndexStore.open(index_dir).snapshot()
    assert {item.metadata["category"] for item in snap.items} == set(CLASS_NAMES)
    assert len({item.hash for item in snap.items}) == 1000


def test_rerun_embeds_nothing(demo_index, demo, embedder):
    index_dir, _ = demo_index
    before = IndexStore.open(index_dir).generation()
    summary = build_index(demo.root, index_dir, metadata_csv=demo.csv_path, embedder=embedder)
    assert summary.embedded == 0 and summary.removed == 0 and summary.reused == 0
    assert summary.unchanged == 1000
    assert IndexStore.open(index_dir).generation() == before  # nothing rewritten


def test_added_changed_removed_and_renamed_files(small_catalog: Path, tmp_path: Path, embedder):
    index_dir = tmp_path / "ix"
    first = build_index(small_catalog, index_dir, embedder=embedder)
    assert first.embedded == 12
    engine = Engine.open(index_dir)
    images = sorted((small_catalog / "images").glob("*.png"))
    old_vector = np.array(
        engine.snapshot.vectors[engine.snapshot.row_of[f"images/{images[1].name}"]]
    )

    Image.new("RGB", (30, 40), (200, 30, 30)).save(small_catalog / "images" / "new.png")  # added
    Image.open(images[0]).rotate(90).save(images[1])  # changed content
    images[2].unlink()  # removed
    images[3].rename(small_catalog / "images" / "renamed.png")  # moved: same bytes
    second = build_index(small_catalog, index_dir, embedder=embedder)

    assert (second.embedded, second.changed, second.removed, second.reused) == (2, 1, 2, 1)
    assert second.unchanged == 9 and second.total == 12
    engine = Engine.open(index_dir)
    ids = set(engine.snapshot.row_of)
    assert "images/new.png" in ids and "images/renamed.png" in ids
    assert f"images/{images[2].name}" not in ids and f"images/{images[3].name}" not in ids
    new_vector = engine.snapshot.vectors[engine.snapshot.row_of[f"images/{images[1].name}"]]
    assert float(new_vector @ old_vector) < 0.99  # re-embedded from its new content
    np.testing.assert_allclose(new_vector, embedder.embed_one(images[1]), atol=1e-5)


def test_metadata_change_updates_without_embedding(small_catalog: Path, tmp_path: Path, embedder):
    csv = small_catalog / "meta.csv"
    names = sorted(p.name for p in (small_catalog / "images").glob("*.png"))
    csv.write_text("path,colour\n" + "".join(f"images/{n},grey\n" for n in names))
    build_index(small_catalog, tmp_path / "ix", metadata_csv=csv, embedder=embedder)
    csv.write_text("path,colour\n" + "".join(f"images/{n},black\n" for n in names))
    summary = build_index(small_catalog, tmp_path / "ix", metadata_csv=csv, embedder=embedder)
    assert summary.embedded == 0 and summary.updated_metadata == 12
    engine = Engine.open(tmp_path / "ix")
    assert {item.metadata["colour"] for item in engine.snapshot.items} == {"black"}


def test_each_kind_of_bad_file_is_skipped_and_listed(small_catalog: Path, tmp_path: Path, embedder):
    images = small_catalog / "images"
    (images / "empty.jpg").write_bytes(b"")
    (images / "corrupt.jpg").write_bytes(os.urandom(2048))
    (images / "text.png").write_text("not an image, just text")
    good = (images / sorted(os.listdir(images))[0]).read_bytes()
    (images / "truncated.png").write_bytes(good[: len(good) // 2])
    (images / "bomb.png").write_bytes(bomb_png(20_000, 20_000))
    summary = build_index(small_catalog, tmp_path / "ix", embedder=embedder)
    reasons = dict(summary.skipped)
    assert set(reasons) == {
        "images/empty.jpg",
        "images/corrupt.jpg",
        "images/text.png",
        "images/truncated.png",
        "images/bomb.png",
    }
    assert "empty" in reasons["images/empty.jpg"]
    assert "not an image" in reasons["images/text.png"]
    assert "decompression bomb" in reasons["images/bomb.png"]
    assert summary.embedded == summary.total == 12


def test_a_file_that_turns_bad_leaves_the_index(small_catalog: Path, tmp_path: Path, embedder):
    build_index(small_catalog, tmp_path / "ix", embedder=embedder)
    victim = sorted((small_catalog / "images").glob("*.png"))[0]
    victim.write_bytes(b"garbage")
    summary = build_index(small_catalog, tmp_path / "ix", embedder=embedder)
    assert [path for path, _ in summary.skipped] == [f"images/{victim.name}"]
    assert f"images/{victim.name}" not in Engine.open(tmp_path / "ix").snapshot.row_of


def test_other_backbone_or_pooling_on_an_existing_index_is_refused(small_catalog, tmp_path):
    build_index(small_catalog, tmp_path / "ix", pooling="gem")
    with pytest.raises(IndexStateError, match="built with efficientnet-lite0 \\(gem"):
        build_index(small_catalog, tmp_path / "ix", pooling="max")


def _copy_images(demo, dest: Path, count: int) -> Path:
    (dest / "images").mkdir(parents=True)
    for path in sorted((demo.root / "images").glob("*.png"))[:count]:
        shutil.copy2(path, dest / "images" / path.name)
    return dest


def _index_command(catalog: Path, index_dir: Path, batch_size: int) -> list[str]:
    """`stylefinder index` in a child process, committing after every batch."""
    return [
        sys.executable, "-m", "stylefinder.cli", "index", str(catalog), "--index", str(index_dir),
        "--checkpoint-seconds", "0", "--batch-size", str(batch_size), "--no-progress",
    ]  # fmt: skip


def test_killed_indexing_keeps_the_last_checkpoint_and_resumes(demo, tmp_path: Path, embedder):
    catalog = _copy_images(demo, tmp_path / "catalog", 256)
    index_dir = tmp_path / "ix"
    command = _index_command(catalog, index_dir, batch_size=16)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if IndexStore.exists(index_dir) and IndexStore.open(index_dir).generation() >= 2:
            break
        time.sleep(0.02)
    assert process.poll() is None, "indexing finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()

    engine = Engine.open(index_dir)  # the previous generation loads
    done = len(engine)
    assert 0 < done < 256
    snap = engine.snapshot
    sample = [snap.items[0], snap.items[-1]]
    for item in sample:  # vectors belong to their items
        expected = embedder.embed_one(catalog / item.path)
        np.testing.assert_allclose(snap.vectors[snap.row_of[item.id]], expected, atol=1e-5)

    summary = build_index(catalog, index_dir, embedder=embedder)
    assert summary.embedded == 256 - done  # resumed: finished work is not redone
    assert summary.total == 256


def test_kills_at_random_moments_never_corrupt(demo, tmp_path: Path):
    catalog = _copy_images(demo, tmp_path / "catalog", 96)
    index_dir = tmp_path / "ix"
    command = _index_command(catalog, index_dir, batch_size=8)
    rng = np.random.default_rng(7)
    for _ in range(4):
        # killed a random moment after one or two more commits: inside a batch, a commit or
        # the start of the next one, without sleeping a fixed guess of how long indexing takes
        target = _generation(index_dir) + int(rng.integers(1, 3))
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if _generation(index_dir) >= target:
                break
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0.0, 0.2)))
        process.kill()
        process.wait()
        if IndexStore.exists(index_dir):
            snap = IndexStore.open(index_dir).snapshot()
            assert snap.vectors.shape == (len(snap.items), snap.header.dim)
            assert np.isfinite(np.asarray(snap.vectors)).all()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(IndexStore.open(index_dir).snapshot()) == 96


def _generation(index_dir: Path) -> int:
    return IndexStore.open(index_dir).generation() if IndexStore.exists(index_dir) else 0


def test_a_wrong_folder_removes_nothing_until_allowed_and_restore_brings_items_back(
    small_catalog: Path, tmp_path: Path, embedder, capsys
):
    from stylefinder.cli import main
    from stylefinder.errors import RemovalGuardError

    index_dir = tmp_path / "ix"
    build_index(small_catalog, index_dir, embedder=embedder)
    generation = IndexStore.open(index_dir).generation()
    empty = tmp_path / "empty"
    empty.mkdir()

    with pytest.raises(RemovalGuardError, match=r"would remove 12 of the index's 12") as caught:
        build_index(empty, index_dir, embedder=embedder)
    assert len(caught.value.removals) == 12
    assert main(["index", str(empty), "--index", str(index_dir)]) == 1  # no terminal: refused
    err = capsys.readouterr().err
    assert "--allow-removals" in err and "nothing was written" in err
    assert main(["index", str(empty), "--index", str(index_dir), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "remove 12" in out and "would remove images/" in out
    assert IndexStore.open(index_dir).generation() == generation  # nothing written

    summary = build_index(empty, index_dir, embedder=embedder, allow_removals=True)
    assert summary.removed == 12 and summary.total == 0
    assert main(["restore", "--index", str(index_dir)]) == 0
    assert "12 items (were 0)" in capsys.readouterr().out
    engine = Engine.open(index_dir)
    assert len(engine) == 12
    some = engine.snapshot.items[0].id
    assert engine.similar(some, k=3)[0].score > 0.5  # the vectors came back with the items


def test_a_dry_run_counts_what_a_run_would_do_and_writes_nothing(
    small_catalog: Path, tmp_path: Path, embedder
):
    index_dir = tmp_path / "ix"
    plan = build_index(small_catalog, index_dir, dry_run=True)  # no index yet: none is made
    assert (plan.embedded, plan.removed, plan.total) == (12, 0, 12)
    assert not index_dir.exists()
    build_index(small_catalog, index_dir, embedder=embedder)
    images = sorted((small_catalog / "images").glob("*.png"))
    images[0].unlink()
    Image.open(images[1]).rotate(90).save(images[2])  # changed content
    plan = build_index(small_catalog, index_dir, dry_run=True)
    assert (plan.embedded, plan.changed, plan.removed) == (1, 1, 1)
    assert plan.removed_ids == [f"images/{images[0].name}"] and plan.total == 11
    real = build_index(small_catalog, index_dir, embedder=embedder)
    assert (real.embedded, real.changed, real.removed, real.total) == (1, 1, 1, 11)


def test_rebuild_replaces_a_damaged_manifest(small_catalog: Path, tmp_path: Path, embedder):
    from stylefinder.errors import DamagedIndexError

    index_dir = tmp_path / "ix"
    build_index(small_catalog, index_dir, embedder=embedder)
    for path in index_dir.glob("manifest.sqlite*"):
        path.unlink()
    (index_dir / "manifest.sqlite").write_bytes(os.urandom(4096))
    with pytest.raises(DamagedIndexError, match="--rebuild"):
        build_index(small_catalog, index_dir, embedder=embedder)
    summary = build_index(small_catalog, index_dir, embedder=embedder, rebuild=True)
    assert summary.embedded == 12 and summary.total == 12
    assert len(list(index_dir.glob("replaced-*/manifest.sqlite"))) == 1
    assert len(Engine.open(index_dir)) == 12
