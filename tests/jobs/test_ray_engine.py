"""Indexing with `--engine ray` on a real local Ray cluster (two CPUs, on 127.0.0.1): the same
vectors, colours and skipped files as local indexing of the same photos, and a clear error
where Ray is not installed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from stylefinder.errors import StylefinderError
from stylefinder.index.store import IndexStore
from stylefinder.jobs.build import build_index

PHOTOS = 60
MANY = 1000  # the whole demo catalog: a run long enough to kill a worker in


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def photos(demo, tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((demo.root / "images").glob("*.png"))[:PHOTOS]:
        shutil.copy2(path, folder / path.name)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


@pytest.fixture
def many_photos(demo, tmp_path) -> Path:
    """The whole 1,000-photo demo catalog in a folder of its own."""
    folder = tmp_path / "many"
    folder.mkdir()
    for path in sorted((demo.root / "images").glob("*.png"))[:MANY]:
        shutil.copy2(path, folder / path.name)
    return folder


def _contents(index: Path) -> dict[str, tuple[np.ndarray, dict]]:
    snapshot = IndexStore.open(index).snapshot()
    return {
        item.id: (np.asarray(snapshot.vectors[row]), dict(item.metadata))
        for row, item in enumerate(snapshot.items.by_row())
        if item is not None
    }


def test_ray_indexing_gives_the_vectors_of_local_indexing(
    ray_cluster, photos, tmp_path, embedder, monkeypatch
):
    local = build_index(photos, tmp_path / "local", embedder=embedder, imagenet_categories=True)

    def not_here(*args, **kwargs):
        raise AssertionError("embedded in the driver, not on the Ray workers")

    monkeypatch.setattr(type(embedder), "embed_stream", not_here)  # the workers are processes
    on_ray = build_index(
        photos,
        tmp_path / "ray",
        embedder=embedder,
        imagenet_categories=True,
        engine="ray",
        ray_workers=2,
    )
    assert on_ray.embedded == local.embedded == PHOTOS
    assert on_ray.skipped == local.skipped and [p for p, _ in on_ray.skipped] == ["broken.png"]
    mine, theirs = _contents(tmp_path / "ray"), _contents(tmp_path / "local")
    assert mine.keys() == theirs.keys() and len(mine) == PHOTOS
    for item_id, (vector, metadata) in mine.items():
        np.testing.assert_allclose(vector, theirs[item_id][0], atol=1e-6)
        assert metadata == theirs[item_id][1]  # colours and category_pred named alike
    assert all(metadata.get("colours") for _, metadata in mine.values())
    again = build_index(photos, tmp_path / "ray", embedder=embedder, engine="ray")
    assert again.embedded == 0 and again.unchanged == PHOTOS  # the scan stays incremental
    monkeypatch.undo()


def test_without_ray_the_error_names_the_extra(photos, tmp_path, embedder, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(StylefinderError, match=r"stylefinder\[ray\]"):
        build_index(photos, tmp_path / "ix", embedder=embedder, engine="ray")


def _embedding_workers() -> list[int]:
    """PIDs of the Ray worker processes running an `EmbedActor`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and "EmbedActor" in title:
            pids.append(int(proc.name))
    return pids


def test_a_worker_killed_mid_run_is_replaced_and_every_item_indexed(
    ray_cluster, many_photos, tmp_path, embedder
):
    import os
    import signal
    import threading
    import time

    killed: list[float] = []  # when

    def kill_one() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            workers = _embedding_workers()
            if workers:
                time.sleep(0.3)  # let it take a batch
                os.kill(workers[0], signal.SIGKILL)
                killed.append(time.monotonic())
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    summary = build_index(
        many_photos, tmp_path / "ix", embedder=embedder, engine="ray", ray_workers=2
    )
    finished = time.monotonic()
    killer.join()
    assert killed, "no embedding worker was seen to kill"
    assert finished - killed[0] > 0.5, "the worker was killed as the run ended, not during it"
    assert summary.embedded == MANY and not summary.skipped
    contents = _contents(tmp_path / "ix")
    assert len(contents) == MANY
    first = sorted(contents)[0]
    np.testing.assert_allclose(
        contents[first][0], embedder.embed_one(many_photos / first), atol=1e-5
    )


def test_a_driver_killed_mid_run_resumes_without_embedding_committed_photos_again(
    ray_cluster, many_photos, tmp_path, embedder
):
    """`stylefinder index --engine ray` SIGKILLed after a checkpoint, then run again on the
    same cluster: what it committed stays, and only the rest is embedded."""
    import subprocess
    import time

    index = tmp_path / "ix"
    address = ray_cluster.get_runtime_context().gcs_address
    command = [
        sys.executable,
        "-m",
        "stylefinder.cli",
        "index",
        str(many_photos),
        "--index",
        str(index),
    ]
    command += ["--engine", "ray", "--address", address, "--workers", "2"]
    command += ["--checkpoint-seconds", "0.5"]
    driver = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    committed = 0
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            try:
                committed = len(IndexStore.open(index).snapshot())
            except (OSError, StylefinderError):  # no first commit yet
                committed = 0
            if committed >= 100:
                break
            time.sleep(0.2)
        assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
    finally:
        driver.kill()  # SIGKILL
        driver.wait(30)
    kept = len(IndexStore.open(index).snapshot())  # a commit may have landed after the count
    assert 100 <= committed <= kept < MANY, (committed, kept)
    again = build_index(many_photos, index, embedder=embedder, engine="ray", ray_workers=2)
    assert again.unchanged == kept  # nothing committed embedded twice
    assert again.embedded == MANY - kept and not again.skipped
    contents = _contents(index)
    assert len(contents) == MANY
    last = sorted(contents)[-1]
    np.testing.assert_allclose(contents[last][0], embedder.embed_one(many_photos / last), atol=1e-5)
