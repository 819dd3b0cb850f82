"""Texts -> unit vectors in a CLIP-family backbone's image space, run without torch: the
text tower's exported ONNX graph and its tokenizer (the `tokenizers` library).

Example:
    >>> encoder = TextEncoder.exported(store.header.space)  # doctest: +SKIP
    >>> encoder.encode(["red floral dress"]).shape  # doctest: +SKIP
    (1, 512)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stylefinder.embed import cache
from stylefinder.embed.base import default_threads
from stylefinder.embed.onnx import cpu_session
from stylefinder.errors import BackboneUnavailableError
from stylefinder.types import EmbeddingSpace

TEXT_BATCH = 64  # texts per run of the graph


class TextEncoder:
    """The text tower exported beside a CLIP-family image graph (`cache.text_files`).

    `logit_scale` turns cosines between text and image vectors into zero-shot logits.

    Example:
        >>> TextEncoder(*text_files(graph)).encode_one("navy shirt").shape  # doctest: +SKIP
        (512,)
    """

    def __init__(self, graph: Path, settings: Path, *, threads: int | None = None) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise BackboneUnavailableError(
                "text queries need the tokenizers package (pip install 'stylefinder[clip]')"
            ) from exc
        config = json.loads(Path(settings).read_text(encoding="utf-8"))
        self.tokenizer = Tokenizer.from_str(config["tokenizer"])
        self.tokenizer.no_padding()
        self.max_length = int(config["max_length"])
        self.tokenizer.enable_truncation(self.max_length)
        self.pad_id = int(config["pad_id"])
        self.pad_to_max = bool(config.get("pad_to_max", False))
        self.logit_scale = float(config["logit_scale"])
        self._session = cpu_session(Path(graph), threads or default_threads())

    @classmethod
    def exported(cls, space: EmbeddingSpace, **options) -> TextEncoder | None:
        """The text tower exported with the image graph of `space`; None when there is none.

        Example:
            >>> TextEncoder.exported(store.header.space) is None  # doctest: +SKIP
            False
        """
        graph = cache.graph_for_space(space)
        if graph is None:
            return None
        text_graph, settings = cache.text_files(graph)
        if not (text_graph.is_file() and settings.is_file()):
            return None
        return cls(text_graph, settings, **options)

    def tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask (N, L) int64 of `texts`, padded to the longest (or to
        `max_length` for a model trained so).

        Example:
            >>> ids, mask = encoder.tokens(["red dress", "a navy linen shirt"])  # doctest: +SKIP
            >>> ids.shape == mask.shape  # doctest: +SKIP
            True
        """
        encoded = [self.tokenizer.encode(text).ids for text in texts]
        width = self.max_length if self.pad_to_max else max(len(ids) for ids in encoded)
        ids = np.full((len(texts), width), self.pad_id, np.int64)
        mask = np.zeros((len(texts), width), np.int64)
        for row, tokens in enumerate(encoded):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors (N, D) float32 of `texts`, in batches.

        Example:
            >>> encoder.encode(["red dress", "black boots"]).shape  # doctest: +SKIP
            (2, 512)
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts; encode_one takes one")
        parts = []
        for start in range(0, len(texts), TEXT_BATCH):
            ids, mask = self.tokens(texts[start : start + TEXT_BATCH])
            parts.append(self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0])
        if not parts:
            return np.zeros((0, self._session.get_outputs()[0].shape[1] or 0), np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def encode_one(self, text: str) -> np.ndarray:
        """One text -> one unit vector (D,)."""
        return self.encode([text])[0]
