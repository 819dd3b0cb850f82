"""The reference runtime: the backbone run eagerly in PyTorch (the `torch` extra).

Example:
    >>> embedder = TorchEmbedder("efficientnet-lite0")  # doctest: +SKIP
    >>> embedder.embed_one("shirt.jpg").shape  # doctest: +SKIP
    (1280,)
"""

from __future__ import annotations

import numpy as np

from stylefinder.catalog.images import DEFAULT_MAX_PIXELS, ImageSource
from stylefinder.embed.base import BaseEmbedder, Outputs
from stylefinder.embed.export import load_torch_model
from stylefinder.embed.registry import DEFAULT_BACKBONE, get_backbone


class TorchEmbedder(BaseEmbedder):
    """An `Embedder` that runs `backbone`'s weights (`weights`: a local file or folder, default
    the backbone's own) in PyTorch; `torch_model` holds the loaded modules."""

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        *,
        pooling: str | None = None,
        weights: str | None = None,
        batch_size: int = 64,
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        spec = get_backbone(backbone)
        super().__init__(spec, batch_size=batch_size, threads=threads, max_pixels=max_pixels)
        self.runtime = "torch"
        self.precision = "fp32"
        self.torch_model = load_torch_model(
            spec, pooling or spec.default_pooling, weights, self.threads
        )
        self.model = self.torch_model.model  # the embedding alone: uint8 pixels -> vectors
        self.has_head = self.torch_model.has_head
        self._set_space(self.torch_model.pooling, self.torch_model.fingerprint, "fp32")

    def _infer(self, batch: np.ndarray) -> Outputs:
        import torch

        with torch.inference_mode():
            out = self.torch_model.graph(torch.from_numpy(batch))
        if isinstance(out, tuple):
            return out[0].numpy(), out[1].numpy()
        return out.numpy(), None

    def classify(self, source: ImageSource) -> np.ndarray:
        """ImageNet class probabilities (1000,) from the backbone's own head, run on its own
        (not in the embedding graph): the reference for `classify_inputs`.

        Example:
            >>> embedder.classify("shirt.jpg").shape  # doctest: +SKIP
            (1000,)
        """
        import torch

        from stylefinder.embed.networks import pool

        loaded = self.torch_model.loaded
        if loaded.classifier is None:
            raise ValueError(f"{self.spec.name}: no torch ImageNet head loaded")
        pixels = torch.from_numpy(self.preprocess(source)[None])
        with torch.inference_mode():
            features = loaded.features(self.model.prepare(pixels))
            logits = loaded.classifier(pool(features, "avg"))
        return logits.softmax(dim=1)[0].numpy()
