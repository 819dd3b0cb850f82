"""Test doubles for the swappable parts: a model-free embedder and a tiny real backbone.

`FakeEmbedder` implements the `Embedder` protocol without a model (a vector of downsampled
pixels, so similar images get similar vectors): for wiring tests of the API, app and CLI.
`save_tiny_resnet` writes random ResNet weights small enough to load, export and run in about
a second through the real loading code (`load_embedder("resnet50", weights=...)`).

Example:
    >>> from fakes import FakeEmbedder
    >>> FakeEmbedder().embed_one(Image.new("RGB", (40, 60), "red")).shape
    (193,)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from stylefinder.catalog.images import DEFAULT_MAX_PIXELS
from stylefinder.embed.base import CLASSES, BaseEmbedder, Outputs
from stylefinder.embed.registry import BackboneSpec, LoadedBackbone, Preprocessing

FAKE_BACKBONE = "fake-pixels"
_SIDE, _CELLS = 32, 8  # inputs of 32x32 pixels, averaged over 8x8 cells


def _no_weights(spec: BackboneSpec, weights: str | None) -> LoadedBackbone:
    raise NotImplementedError("the fake backbone has no weights to load")


FAKE_SPEC = BackboneSpec(
    name=FAKE_BACKBONE,
    dim=_CELLS * _CELLS * 3 + 1,
    default_pooling="avg",
    preprocessing=Preprocessing(_SIDE, (0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),
    loader=_no_weights,
    description="downsampled pixels, for tests (not registered)",
)


class FakeEmbedder(BaseEmbedder):
    """An `Embedder` without a model: an image's 8x8 mean colours, centred, plus a constant
    (so a blank image still has a direction), L2-normalized; with `head`, "ImageNet"
    probabilities from a fixed random projection of the vector. Deterministic.

    Example:
        >>> fake = FakeEmbedder(head=False)
        >>> fake.has_head, fake.space.backbone
        (False, 'fake-pixels')
    """

    def __init__(
        self,
        *,
        head: bool = True,
        batch_size: int = 8,
        threads: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(FAKE_SPEC, batch_size=batch_size, threads=threads, max_pixels=max_pixels)
        self.runtime, self.precision = "fake", "fp32"
        self.has_head = head
        self._head = np.random.default_rng(0).normal(size=(FAKE_SPEC.dim, CLASSES))
        self._set_space("avg", "fake0000", "fp32")

    def _infer(self, batch: np.ndarray) -> Outputs:
        n = len(batch)
        cells = batch.reshape(n, _CELLS, _SIDE // _CELLS, _CELLS, _SIDE // _CELLS, 3)
        pixels = cells.mean(axis=(2, 4)).reshape(n, -1) / 255.0 - 0.5
        raw = np.concatenate([pixels, np.full((n, 1), 0.25)], axis=1)
        vectors = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)
        if not self.has_head:
            return vectors, None
        logits = 4.0 * vectors @ self._head
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return vectors, (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def save_tiny_resnet(folder: Path, *, seed: int = 0) -> Path:
    """Save random ResNet weights (4 stages of 8 to 32 channels, a 1,000-class head) as a
    transformers folder `folder`, for `load_embedder("resnet50", weights=str(folder))`; the
    same `seed` gives the same weights (and so the same fingerprint and cached graph).

    Example:
        >>> weights = save_tiny_resnet(tmp_path / "tiny-resnet")  # doctest: +SKIP
        >>> load_embedder("resnet50", weights=str(weights)).space.dim  # doctest: +SKIP
        32
    """
    import torch
    import transformers

    config = transformers.ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 24, 32],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        num_labels=CLASSES,
    )
    torch.manual_seed(seed)
    transformers.ResNetForImageClassification(config).save_pretrained(folder)
    return folder


def save_tiny_clip(folder: Path, *, seed: int = 0, image_size: int = 224) -> Path:
    """Save a random CLIP model (two 32-wide layers per tower, 16-d vectors, 224-pixel images in
    32-pixel patches) and a byte-level tokenizer as a transformers folder `folder`, for
    `load_embedder("fashion-clip", weights=str(folder))`; the same `seed`, the same weights.

    Example:
        >>> weights = save_tiny_clip(tmp_path / "tiny-clip")  # doctest: +SKIP
        >>> load_embedder("fashion-clip", weights=str(weights)).space.dim  # doctest: +SKIP
        16
    """
    import torch
    import transformers
    from tokenizers.pre_tokenizers import ByteLevel

    letters = sorted(ByteLevel.alphabet())
    vocab = {token: n for n, token in enumerate([*letters, *(c + "</w>" for c in letters)])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=[])
    tower = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2}
    tower["num_attention_heads"] = 4
    config = transformers.CLIPConfig(
        text_config={
            **tower,
            "vocab_size": len(vocab),
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**tower, "image_size": image_size, "patch_size": 32},
        projection_dim=16,
    )
    torch.manual_seed(seed)
    transformers.CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train_tiny_clip(
    weights: Path, images: list[Path], labels: list[str], *, steps: int = 400
) -> Path:
    """Teach the tiny CLIP at `weights` (saved by `save_tiny_clip`) to match `images` with
    the prompts of their `labels` ("a photo of a dress"), then save it back: its projection
    of the (random) image features and its text tower learn, in a few seconds, enough to
    find most labels' images by words (about half the held-out demo images are named right,
    against 10% by chance). The same inputs, the same weights.

    Example:
        >>> train_tiny_clip(save_tiny_clip(tmp / "clip"), paths, labels)  # doctest: +SKIP
    """
    import torch
    import transformers

    from stylefinder.embed.preprocess import to_input
    from stylefinder.embed.registry import CLIP_PREPROCESSING
    from stylefinder.recognize.zero_shot import prompt

    prep = CLIP_PREPROCESSING
    torch.manual_seed(0)
    model = transformers.CLIPModel.from_pretrained(weights, attn_implementation="eager")
    tokenizer = transformers.AutoTokenizer.from_pretrained(weights)
    names = sorted(set(labels))
    prompts = tokenizer([prompt(name) for name in names], padding=True, return_tensors="pt")
    pixels = np.stack([to_input(Image.open(path).convert("RGB"), prep) for path in images])
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    inputs = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - mean) / std
    with torch.no_grad():
        features = model.vision_model(pixel_values=inputs).pooler_output
    target = torch.tensor([names.index(label) for label in labels])
    learning = [model.visual_projection, model.text_model, model.text_projection]
    optimizer = torch.optim.AdamW([p for m in learning for p in m.parameters()], lr=5e-3)
    normalize = torch.nn.functional.normalize
    for _ in range(steps):
        image_vectors = normalize(model.visual_projection(features), dim=1)
        text = model.text_model(**prompts).pooler_output
        text_vectors = normalize(model.text_projection(text), dim=1)
        logits = model.logit_scale.exp().detach() * image_vectors @ text_vectors.T
        loss = torch.nn.functional.cross_entropy(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(weights)
    return weights


def pictures(folder: Path) -> list[Path]:
    """Four small, clearly different product-like images (PNG and JPEG) written to `folder`.

    Example:
        >>> [p.suffix for p in pictures(tmp_path)]  # doctest: +SKIP
        ['.png', '.jpg', '.png', '.jpg']
    """
    folder.mkdir(parents=True, exist_ok=True)
    red = Image.new("RGB", (60, 90), "white")
    red.paste((200, 20, 20), (10, 15, 50, 75))
    blue = Image.new("RGB", (128, 128), (240, 240, 240))
    blue.paste((20, 40, 190), (30, 10, 98, 118))
    stripes = Image.fromarray(np.kron(np.indices((8, 8)).sum(0) % 2, np.ones((9, 9))) * 255)
    gradient = Image.fromarray(np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (50, 1)))
    paths = []
    for n, (image, suffix) in enumerate(
        [(red, ".png"), (blue, ".jpg"), (stripes, ".png"), (gradient, ".jpg")]
    ):
        path = folder / f"picture-{n}{suffix}"
        image.convert("RGB").save(path)
        paths.append(path)
    return paths
