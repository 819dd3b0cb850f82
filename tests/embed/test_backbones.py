"""Backbones: real ImageNet weights on a real photo, runtimes agree, loaders on local models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stylefinder.embed.load import load_embedder
from stylefinder.embed.registry import get_backbone, imagenet_labels, list_backbones
from stylefinder.embed.torch_runtime import TorchEmbedder
from stylefinder.errors import BackboneUnavailableError


@pytest.fixture(scope="module")
def grace_hopper() -> Path:
    """A real photo shipped by matplotlib: Grace Hopper in uniform."""
    matplotlib = pytest.importorskip("matplotlib")
    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def torch_lite0() -> TorchEmbedder:
    """The reference runtime on the default weights."""
    return TorchEmbedder("efficientnet-lite0")


def test_registry_entries_carry_their_preprocessing():
    names = [spec.name for spec in list_backbones()]
    assert {"efficientnet-lite0", "efficientnet-lite2", "resnet50"} <= set(names)
    assert get_backbone("efficientnet-lite2").preprocessing.input_size == 260
    assert get_backbone("resnet50").default_pooling == "max"
    assert get_backbone("resnet50").dim == 2048
    with pytest.raises(BackboneUnavailableError, match=r"choose one of: .*efficientnet-lite0"):
        get_backbone("vgg16")


def test_efficientnet_lite0_weights_recognize_a_real_photo(torch_lite0, grace_hopper: Path):
    probabilities = torch_lite0.classify(grace_hopper)
    assert probabilities.shape == (1000,)
    assert imagenet_labels()[int(np.argmax(probabilities))] == "military uniform"
    assert probabilities.max() > 0.3


def test_onnx_and_torch_runtimes_give_the_same_vectors(
    embedder, torch_lite0, grace_hopper: Path, demo
):
    reference = torch_lite0
    images = [grace_hopper, *sorted((demo.root / "images").glob("*.png"))[:3]]
    fast, slow = embedder.embed(images), reference.embed(images)
    assert fast.shape == slow.shape == (4, 1280)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, rtol=1e-5)
    assert (np.sum(fast * slow, axis=1) > 0.999).all()
    assert embedder.space == reference.space


def test_resnet50_loader_on_a_tiny_local_model(tmp_path: Path, grace_hopper: Path):
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic"
    )
    model = transformers.ResNetForImageClassification(config)
    model.save_pretrained(tmp_path / "tiny-resnet")
    for runtime in ("onnx", "torch"):
        weights = str(tmp_path / "tiny-resnet")
        embedder = load_embedder("resnet50", weights=weights, runtime=runtime)
        vector = embedder.embed_one(grace_hopper)
        assert vector.shape == (32,)  # the tiny model's width, not the real 2048
        assert embedder.space.pooling == "max"
        assert np.linalg.norm(vector) == pytest.approx(1.0, rel=1e-5)
        assert (vector >= 0).all()  # max of post-ReLU maps


def test_resnet50_offline_without_weights_says_how_to_provide_them(monkeypatch, tmp_path: Path):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("STYLEFINDER_RESNET50_WEIGHTS", raising=False)
    with pytest.raises(BackboneUnavailableError, match="--weights") as info:
        get_backbone("resnet50").load()
    assert "save_pretrained" in str(info.value)
    with pytest.raises(BackboneUnavailableError, match="--weights"):
        get_backbone("resnet50").load(str(tmp_path / "no-such-folder"))


def test_lite_weights_file_missing(tmp_path: Path):
    with pytest.raises(BackboneUnavailableError, match="not found"):
        get_backbone("efficientnet-lite0").load(str(tmp_path / "nope.pth"))


def test_int8_quantized_backbone_stays_close(embedder, demo, monkeypatch):
    """int8 quantization of the real weights, calibrated on 24 images instead of 100 (the
    calibration is most of the test's time)."""
    from stylefinder.embed import quantize

    calibrate = quantize.calibration_inputs
    monkeypatch.setattr(quantize, "calibration_inputs", lambda prep: calibrate(prep, count=24))
    int8 = load_embedder("efficientnet-lite0", precision="int8")
    images = sorted((demo.root / "images").glob("*.png"))[:16]
    fast, reference = int8.embed(images), embedder.embed(images)
    assert int8.space.precision == "int8" and int8.space != embedder.space
    assert float(np.mean(np.sum(fast * reference, axis=1))) > 0.9


def test_int8_needs_onnx_runtime():
    with pytest.raises(ValueError, match="int8 precision needs the onnx runtime"):
        load_embedder("efficientnet-lite0", runtime="torch", precision="int8")


def test_weights_fingerprint_ignores_the_graphs_normalization(embedder, torch_lite0):
    import torch

    from stylefinder.embed.export import state_fingerprint

    model = torch_lite0.model
    before = state_fingerprint(model, skip=("mean", "std"))
    saved = model.mean.clone()
    try:
        model.mean.add_(1.0)
        assert state_fingerprint(model, skip=("mean", "std")) == before
        assert state_fingerprint(model) != state_fingerprint(model, skip=("mean", "std"))
    finally:
        with torch.no_grad():
            model.mean.copy_(saved)
    assert embedder.space.weights_fingerprint == before


def test_the_parallel_stream_keeps_order_and_matches_single_embedding(embedder, demo, tmp_path):
    images = sorted((demo.root / "images").glob("*.png"))[:37]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    sources = [(n, path) for n, path in enumerate(images)]
    sources.insert(20, ("broken", broken))
    batches = list(embedder.embed_stream(sources, workers=2, annotate=lambda image: image.size))
    keys = [key for batch in batches for key in batch.keys]
    assert keys == list(range(37))  # in order, across workers, without the broken file
    assert [key for batch in batches for key, _ in batch.failures] == ["broken"]
    assert all(note == (28, 28) for batch in batches for note in batch.notes)
    streamed = np.concatenate([batch.vectors for batch in batches])
    direct = embedder.embed(images)  # the query path: one session with every thread
    assert (np.sum(streamed * direct, axis=1) > 0.9999).all()
    # the ImageNet head ran in the same pass, on the same features
    probabilities = np.concatenate([batch.probabilities for batch in batches])
    inputs = np.stack([embedder.preprocess(path) for path in images])
    np.testing.assert_allclose(probabilities, embedder.classify_inputs(inputs), atol=1e-5)


def test_thread_count_follows_the_environment(monkeypatch, demo, tmp_path):
    from stylefinder.embed.base import cpu_count, default_threads
    from stylefinder.jobs.build import build_index

    monkeypatch.delenv("STYLEFINDER_THREADS", raising=False)
    assert default_threads() == cpu_count()
    monkeypatch.setenv("STYLEFINDER_THREADS", "1")
    assert load_embedder("efficientnet-lite0").threads == 1
    monkeypatch.setenv("STYLEFINDER_THREADS", "zero")
    with pytest.raises(ValueError, match="STYLEFINDER_THREADS must be a positive whole number"):
        default_threads()
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    for path in sorted((demo.root / "images").glob("*.png"))[:5]:
        (catalog / path.name).write_bytes(path.read_bytes())
    summary = build_index(catalog, tmp_path / "index", threads=1, recognize=False)  # beats env
    assert summary.embedded == 5
