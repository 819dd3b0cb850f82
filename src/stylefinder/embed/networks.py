"""Small torch modules around the backbones: feature maps, pooling, and the exported graph.

Imported only where torch is needed (loading, export, the torch runner).
"""

from __future__ import annotations

import torch
from torch import nn

GEM_POWER = 3.0


class EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite up to its last convolution: (B,3,H,W) -> (B,1280,h,w)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


class ResNetFeatures(nn.Module):
    """A transformers `ResNetModel` without its pooler: (B,3,H,W) -> (B,C,h,w)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values=x).last_hidden_state


def pool(maps: torch.Tensor, pooling: str) -> torch.Tensor:
    """Global pooling of feature maps (B,C,h,w) -> (B,C): "avg", "max" or "gem" (p=3)."""
    if pooling == "avg":
        return maps.mean(dim=(2, 3))
    if pooling == "max":
        return maps.amax(dim=(2, 3))
    if pooling == "gem":
        return maps.clamp(min=1e-6).pow(GEM_POWER).mean(dim=(2, 3)).pow(1.0 / GEM_POWER)
    raise ValueError(f"unknown pooling {pooling!r}; choose avg, max or gem")


class PooledEmbedding(nn.Module):
    """The graph the runners execute: uint8 pixels (B,H,W,3) -> normalized input -> backbone
    features -> global pooling -> L2-normalized vectors (B,C).

    Normalizing inside the graph keeps the Python side to decoding and resizing, and moves
    4x fewer bytes per image than float input.
    """

    def __init__(self, features: nn.Module, pooling: str, mean, std) -> None:
        super().__init__()
        self.features = features
        self.pooling = pooling
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B,H,W,3) -> the float (B,3,H,W) input the backbone was trained on."""
        return (pixels.permute(0, 3, 1, 2).float() - self.mean) / self.std

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pooled = pool(self.features(self.prepare(pixels)), self.pooling)
        return nn.functional.normalize(pooled, dim=1)


class EmbeddingWithHead(nn.Module):
    """The embedding graph plus the backbone's ImageNet head on the same features, so one run
    gives both: uint8 pixels (B,H,W,3) -> (vectors (B,C), ImageNet probabilities (B,1000)).

    The head reads average-pooled features, as it was trained; its cost is a small fraction of
    the backbone's.
    """

    def __init__(self, embedding: PooledEmbedding, classifier: nn.Module) -> None:
        super().__init__()
        self.embedding = embedding
        self.classifier = classifier

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embedding
        maps = embedding.features(embedding.prepare(pixels))
        vectors = nn.functional.normalize(pool(maps, embedding.pooling), dim=1)
        return vectors, self.classifier(pool(maps, "avg")).softmax(dim=1)


class ClipImageFeatures(nn.Module):
    """A CLIP-family image tower as one-position feature maps: (B,3,H,W) -> (B,D,1,1), its
    projected image embedding (so "avg" pooling is the embedding itself)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision = model.vision_model
        self.projection = getattr(model, "visual_projection", None) or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.vision(pixel_values=x).pooler_output
        return self.projection(pooled)[:, :, None, None]


class ClipTextEncoder(nn.Module):
    """A CLIP-family text tower: token ids and attention mask (B,L) int64 -> unit vectors
    (B,D) in the image tower's space."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text = model.text_model
        self.projection = getattr(model, "text_projection", None) or nn.Identity()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.text(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return nn.functional.normalize(self.projection(pooled), dim=1)
