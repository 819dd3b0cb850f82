"""CLIP-family backbones on tiny random CLIP models saved to a temp dir, through the real
loading and export code: shapes, ONNX against torch for both towers, the offline message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stylefinder.embed import cache
from stylefinder.embed.load import embedder_for_space, load_embedder, text_encoder_for_space
from stylefinder.embed.registry import embeds_text, get_backbone
from stylefinder.embed.text_encoder import TextEncoder
from stylefinder.errors import BackboneUnavailableError

TEXTS = ["red floral dress", "a navy linen shirt with long sleeves and buttons", "Boots!", "é"]


def test_clip_family_entries_embed_text_and_pool_once():
    for name in ("fashion-clip", "clip-vit-b-32-laion2b"):
        spec = get_backbone(name)
        assert spec.has_text and embeds_text(name) and spec.dim == 512
        assert spec.default_pooling == "avg" and spec.preprocessing.input_size == 224
        with pytest.raises(ValueError, match="pooling avg only"):
            spec.check_pooling("gem")
    assert not embeds_text("efficientnet-lite0") and not embeds_text("no-such-backbone")


def test_tiny_clip_towers_agree_between_onnx_and_torch(tiny_clip_weights: Path, pictures):
    weights = str(tiny_clip_weights)
    onnx = load_embedder("fashion-clip", weights=weights)
    torch_embedder = load_embedder("fashion-clip", weights=weights, runtime="torch")
    assert onnx.space == torch_embedder.space and onnx.space.dim == 16  # the tiny model's width
    assert not onnx.has_head  # no ImageNet head: categories come from prompts
    vectors = onnx.embed(pictures)
    assert vectors.shape == (len(pictures), 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors, torch_embedder.embed(pictures), atol=1e-5)

    text_graph, settings = cache.text_files(onnx.graph)
    assert text_graph.is_file() and settings.is_file()
    encoder = text_encoder_for_space(onnx.space)
    encoded = encoder.encode(TEXTS)
    assert encoded.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(np.linalg.norm(encoded, axis=1), 1.0, rtol=1e-5)
    import torch

    ids, mask = encoder.tokens(TEXTS)  # padded to the longest: padding must not count
    reference = torch_embedder.torch_model.loaded.text
    with torch.inference_mode():
        expected = reference.encoder(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        unpadded = torch.from_numpy(ids[2:3, : mask[2].sum()])
        alone = reference.encoder(unpadded, torch.ones_like(unpadded)).numpy()[0]
    np.testing.assert_allclose(encoded, expected, atol=1e-5)
    np.testing.assert_allclose(encoded[2], alone, atol=1e-5)
    assert not np.allclose(encoded[0], encoded[1])  # different texts, different vectors


def test_text_tower_tokens_are_those_of_the_saved_tokenizer(tiny_clip_weights: Path):
    transformers = pytest.importorskip("transformers")
    embedder = load_embedder("fashion-clip", weights=str(tiny_clip_weights))
    encoder = TextEncoder.exported(embedder.space)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_clip_weights)
    ids, mask = encoder.tokens(TEXTS)
    for row, text in enumerate(TEXTS):
        assert ids[row, : mask[row].sum()].tolist() == tokenizer(text)["input_ids"]
    long_ids, _ = encoder.tokens(["dress " * 200])
    assert long_ids.shape[1] == encoder.max_length == 77  # cut to what the model reads


def test_an_exported_clip_index_embeds_text_without_torch(tiny_clip_weights: Path):
    embedder = load_embedder("fashion-clip", weights=str(tiny_clip_weights))
    expected = text_encoder_for_space(embedder.space).encode(["red dress"])[0]
    script = (
        "import json, sys\n"
        'sys.modules["torch"] = None\n'
        "from stylefinder.embed.text_encoder import TextEncoder\n"
        "from stylefinder.types import EmbeddingSpace\n"
        "space = EmbeddingSpace(*json.loads(sys.argv[1]))\n"
        "print(json.dumps(TextEncoder.exported(space).encode(['red dress'])[0].tolist()))\n"
    )
    space = embedder.space
    fields = [space.backbone, space.pooling, space.weights_fingerprint, space.dim]
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(fields)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "STYLEFINDER_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(json.loads(done.stdout), expected, atol=1e-6)
    assert embedder_for_space(space).space == space  # and images too, from the cache


def test_clip_offline_without_weights_says_how_to_provide_them(monkeypatch, tmp_path: Path):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("STYLEFINDER_FASHION_CLIP_WEIGHTS", raising=False)
    with pytest.raises(BackboneUnavailableError, match="--weights fashion-clip") as info:
        get_backbone("fashion-clip").load()
    message = str(info.value)
    assert "patrickjohncyh/fashion-clip" in message and "save_pretrained" in message
    assert "STYLEFINDER_FASHION_CLIP_WEIGHTS" in message
    monkeypatch.setenv("STYLEFINDER_FASHION_CLIP_WEIGHTS", str(tmp_path / "no-such-folder"))
    with pytest.raises(BackboneUnavailableError, match="no-such-folder"):
        get_backbone("fashion-clip").load()


def test_clip_weights_for_other_image_sizes_or_broken_are_refused(tmp_path: Path):
    pytest.importorskip("transformers")
    from fakes import save_tiny_clip

    folder = save_tiny_clip(tmp_path / "clip-96", image_size=96)
    with pytest.raises(BackboneUnavailableError, match="96-pixel images, not the 224"):
        get_backbone("fashion-clip").load(str(folder))
    broken = save_tiny_clip(tmp_path / "clip-broken")  # a config that is not its weights'
    config = json.loads((broken / "config.json").read_text())
    config["vision_config"]["image_size"] = 96
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackboneUnavailableError, match="cannot load fashion-clip weights"):
        get_backbone("fashion-clip").load(str(broken))


def test_text_needs_a_clip_family_backbone(tiny_embedder):
    with pytest.raises(BackboneUnavailableError, match="CLIP-family"):
        text_encoder_for_space(tiny_embedder.space)
