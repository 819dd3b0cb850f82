"""Every embedder keeps the `Embedder` contract (tests/embed/contract.py): the ONNX Runtime
embedder (loaded and exported, or from a cached graph alone, in fp32 and int8), the torch
reference, the real default backbone, and the model-free fake the wiring tests use."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from contract import EmbedderContract
from PIL import Image

from fakes import FakeEmbedder
from stylefinder.embed.load import load_embedder
from stylefinder.embed.onnx import OnnxEmbedder


class TestFakeEmbedder(EmbedderContract):
    @pytest.fixture(scope="class")
    @classmethod
    def subject(cls):
        return FakeEmbedder()


class TestFakeEmbedderWithoutHead(EmbedderContract):
    @pytest.fixture(scope="class")
    @classmethod
    def subject(cls):
        return FakeEmbedder(head=False, batch_size=3)


class TestOnnxEmbedder(EmbedderContract):
    @pytest.fixture(scope="class")
    @classmethod
    def subject(cls, tiny_embedder):
        return tiny_embedder


class TestExportedOnnxEmbedder(EmbedderContract):
    """From the cached graph alone, as an index's engine opens it (no torch)."""

    @pytest.fixture(scope="class")
    @classmethod
    def subject(cls, tiny_embedder):
        exported = OnnxEmbedder.exported(tiny_embedder.space, batch_size=2)
        assert exported is not None and exported.space == tiny_embedder.space
        return exported


class TestInt8OnnxEmbedder(EmbedderContract):
    @pytest.fixture(scope="class")
    @classmethod
    def subject(cls, tiny_weights):
        return load_embedder("resnet50", weights=str(tiny_weights), precision="int8")


class TestTorchEmbedder(EmbedderContract):
    @pytest.fixture(scope="class")
    @classmethod
    def subject(cls, tiny_weights):
        return load_embedder("resnet50", weights=str(tiny_weights), runtime="torch")


class TestEfficientNetLite0(EmbedderContract):
    """The real default backbone, on ONNX Runtime (the session's embedder)."""

    @pytest.fixture(scope="class")
    @classmethod
    def subject(cls, embedder):
        return embedder


def test_the_runtimes_agree_on_the_tiny_weights(tiny_embedder, tiny_weights, pictures):
    torch_runtime = load_embedder("resnet50", weights=str(tiny_weights), runtime="torch")
    assert torch_runtime.space == tiny_embedder.space
    assert tiny_embedder.space.dim == 32 and tiny_embedder.space.pooling == "max"
    np.testing.assert_allclose(
        tiny_embedder.embed(pictures), torch_runtime.embed(pictures), atol=1e-4
    )


def test_the_fake_puts_similar_images_close(pictures):
    fake = FakeEmbedder()
    red = Image.open(pictures[0]).convert("RGB")
    redder = red.point(lambda v: min(255, v + 12)).resize((66, 99))
    vectors = fake.embed([red, redder, pictures[1], pictures[2]])
    similarity = vectors @ vectors[0]
    assert similarity[1] > 0.99 and similarity[1] > similarity[2:].max() + 0.05


_NO_TORCH = """
import json, sys
import numpy as np
import stylefinder.embed.onnx as onnx
from stylefinder.types import EmbeddingSpace

space = EmbeddingSpace(**json.loads(sys.argv[1]))
embedder = onnx.OnnxEmbedder.exported(space)
vector = embedder.embed_one(sys.argv[2])
print(json.dumps({"torch": "torch" in sys.modules, "vector": vector.tolist()}))
"""


def test_the_onnx_embedder_never_imports_torch(tiny_embedder, pictures):
    space = tiny_embedder.space
    fields = {"backbone": space.backbone, "pooling": space.pooling, "dim": space.dim}
    fields |= {"weights_fingerprint": space.weights_fingerprint, "precision": space.precision}
    done = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, json.dumps(fields), str(pictures[0])],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "STYLEFINDER_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch"] is False
    np.testing.assert_allclose(result["vector"], tiny_embedder.embed_one(pictures[0]), atol=1e-5)
