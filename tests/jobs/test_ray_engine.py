"""Indexing with `--engine ray` on a real Ray cluster of two nodes on 127.0.0.1 (a head and a
worker node, one CPU each): the same vectors, colours and skipped files as local indexing of
the same photos, a killed worker or driver, servers on loopback only, and a clear error where
Ray is not installed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from stylefinder.errors import StylefinderError
from stylefinder.index.store import IndexStore
from stylefinder.jobs.build import build_index
from stylefinder.jobs.ray_engine import loopback_only, release_pools

PHOTOS = 60
MANY = 1000  # the whole demo catalog: a run long enough to kill a worker in


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node and a second worker node, both on 127.0.0.1, and this process their driver."""
    loopback_only()
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        assert [node["Alive"] for node in ray.nodes()] == [True, True]
        yield ray
    finally:
        ray.shutdown()
        cluster.shutdown()


def _listening(pids: set[int]) -> set[str]:
    """The addresses that the processes `pids` listen on (TCP)."""
    psutil = pytest.importorskip("psutil")
    seen = set()
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.pid in pids:
            seen.add(connection.laddr.ip)
    return seen


def _ray_processes() -> set[int]:
    psutil = pytest.importorskip("psutil")
    names = ("gcs_server", "raylet", "ray::", "default_worker", "dashboard", "log_monitor")
    found = set()
    for proc in psutil.process_iter(["cmdline", "name"]):
        line = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["name"] or "")
        if any(name in line for name in names):
            found.add(proc.pid)
    return found


LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def test_the_two_node_test_cluster_listens_on_loopback_only(ray_cluster):
    nodes = ray_cluster.nodes()
    assert len(nodes) == 2 and {node["NodeManagerAddress"] for node in nodes} == {"127.0.0.1"}
    addresses = _listening(_ray_processes())
    assert addresses and addresses <= LOOPBACK, addresses


def test_a_cluster_started_for_one_run_listens_on_loopback_only(photos, tmp_path):
    """`stylefinder index --engine ray` with no --address starts a cluster of its own: while it
    runs, every server of that cluster listens on 127.0.0.1 only."""
    import subprocess
    import time

    psutil = pytest.importorskip("psutil")
    pytest.importorskip("ray")
    command = [sys.executable, "-m", "stylefinder.cli", "index", str(photos)]
    command += ["--index", str(tmp_path / "ix"), "--engine", "ray", "--workers", "1"]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: set[str] = set()
    servers = set()
    try:
        while driver.poll() is None:
            family = {driver.pid} | {
                child.pid for child in psutil.Process(driver.pid).children(recursive=True)
            }
            listening = _listening(family)
            if listening:
                servers |= family
            seen |= listening
            time.sleep(0.1)
    except psutil.NoSuchProcess:
        pass
    finally:
        driver.wait(120)
    assert driver.returncode == 0, driver.stderr.read().decode()[-2000:]
    assert len(servers) >= 3, "gcs_server, raylet and workers were not seen listening"
    assert seen and seen <= LOOPBACK, seen
    assert len(IndexStore.open(tmp_path / "ix").snapshot()) == PHOTOS


def _demo_photos(demo, folder: Path, count: int) -> Path:
    """The first `count` demo photos, copied into `folder`."""
    folder.mkdir()
    for path in sorted((demo.root / "images").glob("*.png"))[:count]:
        shutil.copy2(path, folder / path.name)
    return folder


@pytest.fixture
def photos(demo, tmp_path) -> Path:
    folder = _demo_photos(demo, tmp_path / "photos", PHOTOS)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


@pytest.fixture
def many_photos(demo, tmp_path) -> Path:
    """The whole 1,000-photo demo catalog in a folder of its own."""
    return _demo_photos(demo, tmp_path / "many", MANY)


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


@pytest.fixture(autouse=True)
def _one_pool_at_a_time():
    """Each test starts once the actors of the one before have ended, and leaves no kept pool
    behind even when it fails (a kept pool holds the cluster's two CPUs, and the next test's
    actors could never be placed)."""
    import time

    deadline = time.monotonic() + 30
    while _embedding_workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    yield
    release_pools()


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


def test_int8_indexing_on_ray_gives_the_vectors_of_local_int8_indexing(
    ray_cluster, photos, tmp_path, monkeypatch
):
    """The int8 graph travels to the workers with the float one: they run what the driver
    would, without quantizing again."""
    from stylefinder.embed import quantize
    from stylefinder.embed.load import load_embedder

    calibrate = quantize.calibration_inputs  # 24 calibration images, as the backbone test
    monkeypatch.setattr(quantize, "calibration_inputs", lambda prep: calibrate(prep, count=24))
    int8 = load_embedder("efficientnet-lite0", precision="int8")
    local = build_index(photos, tmp_path / "local", embedder=int8)
    on_ray = build_index(
        photos, tmp_path / "ray", embedder=int8, engine="ray", ray_workers=2, ray_batch_size=8
    )
    assert on_ray.embedded == local.embedded == PHOTOS and on_ray.skipped == local.skipped
    mine, theirs = _contents(tmp_path / "ray"), _contents(tmp_path / "local")
    assert mine.keys() == theirs.keys()
    for item_id, (vector, metadata) in mine.items():
        np.testing.assert_allclose(vector, theirs[item_id][0], atol=1e-6)
        assert metadata == theirs[item_id][1]
    assert IndexStore.open(tmp_path / "ray").header.space.precision == "int8"


def test_kept_workers_serve_the_next_run_and_end_when_released(
    ray_cluster, photos, tmp_path, embedder
):
    from stylefinder.jobs.ray_engine import release_pools

    first = build_index(
        photos,
        tmp_path / "a",
        embedder=embedder,
        engine="ray",
        ray_workers=2,
        ray_keep_workers=True,
    )
    kept = set(_embedding_workers())
    assert first.embedded == PHOTOS and len(kept) == 2  # still up after the run
    second = build_index(
        photos,
        tmp_path / "b",
        embedder=embedder,
        engine="ray",
        ray_workers=2,
        ray_keep_workers=True,
    )
    assert second.embedded == PHOTOS and set(_embedding_workers()) == kept  # the same actors
    assert _contents(tmp_path / "a").keys() == _contents(tmp_path / "b").keys()
    release_pools()
    import time

    deadline = time.monotonic() + 30
    while set(_embedding_workers()) & kept and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not set(_embedding_workers()) & kept  # released: their processes end


def test_a_list_of_paths_indexes_on_ray_what_it_names(ray_cluster, photos, tmp_path, embedder):
    """The catalog given as a list of image paths on shared storage: only those are indexed,
    and a line naming no file is reported."""
    names = sorted(p.name for p in photos.glob("*.png") if p.name != "broken.png")[:20]
    listing = photos / "batch.txt"
    listing.write_text("\n".join([*names, "missing.png"]) + "\n")
    summary = build_index(listing, tmp_path / "ix", embedder=embedder, engine="ray", ray_workers=2)
    assert summary.embedded == 20 and summary.scanned == 20
    assert summary.metadata_problems == ["line 21: missing.png: no such file"]
    assert sorted(_contents(tmp_path / "ix")) == names


def test_images_on_object_storage_are_read_by_the_workers(ray_cluster, photos, tmp_path, embedder):
    """A list of `file://` URIs (read through pyarrow, as `s3://` is): the workers read the
    bytes, the vectors are local indexing's, and a second run reads nothing again."""
    pytest.importorskip("pyarrow")
    names = sorted(p.name for p in photos.glob("*.png") if p.name != "broken.png")[:12]
    listing = tmp_path / "remote.txt"
    listing.write_text("\n".join((photos / name).as_uri() for name in names) + "\n")
    local = build_index(listing, tmp_path / "local", embedder=embedder)
    on_ray = build_index(listing, tmp_path / "ray", embedder=embedder, engine="ray", ray_workers=2)
    assert on_ray.embedded == local.embedded == 12 and not on_ray.skipped
    mine, theirs = _contents(tmp_path / "ray"), _contents(tmp_path / "local")
    assert sorted(mine) == sorted((photos / name).as_uri() for name in names) == sorted(theirs)
    for item_id, (vector, metadata) in mine.items():
        np.testing.assert_allclose(vector, theirs[item_id][0], atol=1e-6)
        np.testing.assert_allclose(
            vector, embedder.embed_one(photos / item_id.rsplit("/", 1)[1]), atol=1e-5
        )
        assert metadata == theirs[item_id][1]
    again = build_index(listing, tmp_path / "ray", embedder=embedder, engine="ray")
    assert again.embedded == 0 and again.unchanged == 12
