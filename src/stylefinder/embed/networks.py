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
    """Backbone features, pooled and L2-normalized: the graph the runners execute."""

    def __init__(self, features: nn.Module, pooling: str) -> None:
        super().__init__()
        self.features = features
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = pool(self.features(x), self.pooling)
        return nn.functional.normalize(pooled, dim=1)
