"""Recommendations on the demo catalog: quality against raw pixels, exclusions, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from stylefinder import BadImageError, Engine, IndexStateError, UnknownItemError, build_index
from stylefinder.catalog.images import load_image
from stylefinder.evaluate.metrics import all_correct_at_k, precision_at_k
from stylefinder.types import EmbeddingSpace


@pytest.fixture(scope="module")
def engine(demo_index, embedder) -> Engine:
    index_dir, _ = demo_index
    engine = Engine.open(index_dir)
    engine._embedder = embedder  # share the session's loaded model
    return engine


def test_features_beat_raw_pixels_on_the_demo_catalog(engine: Engine, report):
    snap = engine.snapshot
    labels = np.array([item.metadata["category"] for item in snap.items])
    features = precision_at_k(np.asarray(snap.vectors), labels, k=5)
    pixels = np.stack(
        [np.asarray(load_image(engine.image_path(item)), np.float32).ravel() for item in snap.items]
    )
    pixels /= np.linalg.norm(pixels, axis=1, keepdims=True)
    baseline = precision_at_k(pixels, labels, k=5)
    report("demo precision@5, efficientnet-lite0 (gem)", f"{features:.4f}")
    report("demo precision@5, raw-pixel cosine", f"{baseline:.4f}")
    report("demo share of items with all 5 right", f"{all_correct_at_k(snap.vectors, labels):.3f}")
    assert features > baseline + 0.03


def test_recommend_a_held_out_photo(engine: Engine, demo):
    path, category = next((p, c) for p, c in demo.queries if c == "Trouser")
    results = engine.recommend(path, k=5)
    assert len(results) == 5
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True) and -1 <= scores[-1] <= scores[0] <= 1
    assert [r.metadata["category"] for r in results] == [category] * 5
    assert all(Path(r.path).is_file() for r in results)


def test_the_query_itself_is_never_returned(engine: Engine, demo):
    item = engine.snapshot.items[10]
    path = demo.root / item.path
    for query in (path, str(path), path.read_bytes()):
        ids = [r.id for r in engine.recommend(query, k=5)]
        assert item.id not in ids and len(ids) == 5
    pil = load_image(path)  # a decoded image has no file bytes: its own item comes first
    assert engine.recommend(pil, k=1)[0].id == item.id


def test_similar_excludes_the_item_and_its_byte_identical_copies(demo, tmp_path, embedder):
    catalog = tmp_path / "cat"
    catalog.mkdir()
    sources = sorted((demo.root / "images").glob("*.png"))[:8]
    for path in sources:
        shutil.copy2(path, catalog / path.name)
    shutil.copy2(sources[0], catalog / "copy-of-first.png")
    build_index(catalog, tmp_path / "ix", embedder=embedder)
    engine = Engine.open(tmp_path / "ix")
    ids = [r.id for r in engine.similar(sources[0].name, k=20)]
    assert sources[0].name not in ids and "copy-of-first.png" not in ids
    assert len(ids) == 7  # all the others, fewer than k


def test_more_like_this_matches_recommend_on_the_same_file(engine: Engine, demo):
    item = engine.snapshot.items[123]
    by_item = [r.id for r in engine.similar(item.id, k=5)]
    by_file = [r.id for r in engine.recommend(demo.root / item.path, k=5)]
    assert by_item == by_file


def test_errors(engine: Engine, tmp_path: Path):
    with pytest.raises(UnknownItemError, match="no item 'nope'"):
        engine.similar("nope")
    with pytest.raises(ValueError, match="positive integer"):
        engine.similar(engine.snapshot.items[0].id, k=0)
    with pytest.raises(BadImageError, match="not an image"):
        engine.recommend(b"hello")
    with pytest.raises(BadImageError, match="not found"):
        engine.recommend(tmp_path / "missing.jpg")
    other = EmbeddingSpace("resnet50", "max", "f00", engine.snapshot.header.dim)
    with pytest.raises(IndexStateError, match=r"built with efficientnet-lite0.*uses resnet50"):
        engine.search_vector(engine.snapshot.vectors[0], space=other)
    with pytest.raises(ValueError, match="dimensions"):
        engine.search_vector(np.ones(3, np.float32))


def test_reload_sees_other_writers(small_catalog: Path, tmp_path: Path, embedder):
    build_index(small_catalog, tmp_path / "ix", embedder=embedder)
    engine = Engine.open(tmp_path / "ix")
    assert not engine.reload()
    before = engine.info().generation  # embedding, then naming colours: two commits
    victim = sorted((small_catalog / "images").glob("*.png"))[0]
    victim.unlink()
    build_index(small_catalog, tmp_path / "ix", embedder=embedder)
    assert engine.reload() and len(engine) == 11
    assert engine.info().items == 11 and engine.info().generation == before + 1


def _png(colour: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), (255, 255, 255))
    ImageDraw.Draw(image).rectangle((12, 8, 52, 60), fill=colour)  # a garment on a backdrop
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_items_added_through_the_api_are_recognized_at_once(demo_index, tmp_path, embedder):
    from stylefinder.index.store import IndexStore
    from stylefinder.jobs.tune import tune_index

    source, _ = demo_index
    shutil.copytree(source, tmp_path / "ix")
    tune_index(tmp_path / "ix", label_column="category", epochs=1)
    engine = Engine(IndexStore.open(tmp_path / "ix"), embedder=embedder)
    labels = set(engine.projection.classifier.labels)

    item, _ = engine.add_item("sku-red", _png((200, 20, 30)), {"price": 49, "sale": True})
    assert item.metadata["colours"] == "red"
    assert item.metadata["category_pred"] in labels
    assert item.metadata["price"] == 49 and item.metadata["sale"] == "true"  # a number stays one
    found, _ = engine.browse(filters={"colours": ["red"]}, limit=2000)
    assert "sku-red" in [i.id for i in found]
    given, _ = engine.add_item("sku-2", _png((200, 20, 30)), {"colours": "navy"})
    assert given.metadata["colours"] == "navy"  # what the client says is kept
