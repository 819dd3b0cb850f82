"""Run an exported backbone graph with ONNX Runtime; never imports torch.

ONNX Runtime is the default runtime (several times faster than eager PyTorch on a CPU). The
graph is exported once per backbone, pooling and weights (`stylefinder.embed.export`) and kept
in the cache (`stylefinder.embed.cache`); an index whose graph is there runs without torch.

Example:
    >>> embedder = OnnxEmbedder.exported(store.header.space)  # doctest: +SKIP
    >>> embedder.embed_one("shirt.jpg").shape  # doctest: +SKIP
    (1280,)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stylefinder.catalog.images import DEFAULT_MAX_PIXELS
from stylefinder.embed import cache
from stylefinder.embed.base import CLASSES, BaseEmbedder, BatchRunner, Outputs
from stylefinder.embed.quantize import int8_graph
from stylefinder.embed.registry import DEFAULT_BACKBONE, get_backbone
from stylefinder.types import EmbeddingSpace

PRECISIONS = ("fp32", "int8")


class OnnxEmbedder(BaseEmbedder):
    """An `Embedder` on the exported float graph `graph` of `backbone` with `pooling`, whose
    weights have `fingerprint`; `precision="int8"` runs its int8 version (quantized on first
    use, see `stylefinder.embed.quantize`).

    Example:
        >>> resnet = OnnxEmbedder("resnet50", graph, pooling="max", fingerprint=x)  # doctest: +SKIP
        >>> resnet.space.backbone  # doctest: +SKIP
        'resnet50'
    """

    def __init__(
        self,
        backbone: str,
        graph: Path,
        *,
        pooling: str,
        fingerprint: str,
        precision: str = "fp32",
        batch_size: int = 64,
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(
            get_backbone(backbone), batch_size=batch_size, threads=threads, max_pixels=max_pixels
        )
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose {' or '.join(PRECISIONS)}")
        self.runtime = "onnx"
        self.precision = precision
        self.graph = Path(graph)
        self._session = self._open(threads=self.threads, precision=precision)
        self._stream_session = None  # one-thread twin of _session for embed_stream's workers
        self._float_session = None  # the float graph, for int8 embedders' classify_inputs
        self.has_head = len(self._session.get_outputs()) > 1  # ImageNet probabilities
        self._set_space(pooling, fingerprint, precision)

    @classmethod
    def exported(
        cls, space: EmbeddingSpace, *, max_pixels: int = DEFAULT_MAX_PIXELS, **options
    ) -> OnnxEmbedder | None:
        """An embedder for vectors of `space` (an index's header) from the graph exported
        earlier for its backbone, pooling and weights fingerprint; None when no such graph is
        cached (`stylefinder.embed.load.load_embedder` exports it).

        Example:
            >>> embedder = OnnxEmbedder.exported(store.header.space)  # doctest: +SKIP
        """
        graph = cache.graph_for_space(space)
        if graph is None:
            return None
        return cls(
            space.backbone,
            graph,
            pooling=space.pooling,
            fingerprint=space.weights_fingerprint,
            precision=space.precision,
            max_pixels=max_pixels,
            **options,
        )

    @classmethod
    def for_weights(
        cls,
        backbone: str = DEFAULT_BACKBONE,
        *,
        pooling: str | None = None,
        weights: str | None = None,
        precision: str = "fp32",
        **options,
    ) -> OnnxEmbedder | None:
        """An embedder from the graph an earlier `load_embedder` exported for these same
        weights (the same file, size and modification time); None when there is none.

        Example:
            >>> OnnxEmbedder.for_weights("efficientnet-lite0") or load_embedder()  # doctest: +SKIP
        """
        spec = get_backbone(backbone)
        pooling = pooling or spec.default_pooling
        known = cache.graph_for_weights(spec.weights_id(weights), pooling)
        if known is None:
            return None
        graph, fingerprint = known
        return cls(
            backbone,
            graph,
            pooling=pooling,
            fingerprint=fingerprint,
            precision=precision,
            **options,
        )

    def _infer(self, batch: np.ndarray) -> Outputs:
        return self._split(self._session.run(None, {"pixels": batch}))

    @property
    def _gives_probabilities(self) -> bool:
        return self.has_head and self.precision == "fp32"

    def _split(self, arrays: Sequence[np.ndarray]) -> Outputs:
        """A graph's outputs as (vectors, ImageNet probabilities or None). An int8 graph's
        probabilities are left out: its garment categories are right less often (top-1 0.161
        against 0.206, benchmarks/imagenet_fallback.py), so `classify_inputs` runs the float
        graph instead."""
        probabilities = arrays[1] if len(arrays) > 1 and self.precision == "fp32" else None
        return arrays[0], probabilities

    def _stream_runner(self, workers: int) -> BatchRunner:
        """Each of `workers` threads runs a one-thread session, so decoding and inference never
        fight over cores (one session with several threads scales worse on small convolutions)."""
        if workers == 1:
            return super()._stream_runner(workers)
        if self._stream_session is None:
            self._stream_session = self._open(threads=1, precision=self.precision)
        session = self._stream_session

        def run_each(batch: np.ndarray) -> Outputs:
            # one image per call: a one-thread session is ~20% faster per image at batch 1 than
            # at 16, its activations staying in the core's cache (benchmarks/index_throughput)
            outputs = [session.run(None, {"pixels": batch[i : i + 1]}) for i in range(len(batch))]
            return self._split([np.concatenate(column) for column in zip(*outputs, strict=True)])

        return run_each

    def classify_inputs(self, batch: np.ndarray) -> np.ndarray:
        """Inputs (N, S, S, 3) uint8 -> ImageNet probabilities (N, 1000), in batches, from the
        same graph as the embedding; an int8 embedder runs the float graph (see `_split`).

        Example:
            >>> inputs = np.zeros((2, 224, 224, 3), np.uint8)
            >>> embedder.classify_inputs(inputs).shape  # doctest: +SKIP
            (2, 1000)
        """
        if self.precision == "fp32" or not self.has_head:
            return super().classify_inputs(batch)
        if not len(batch):
            return np.zeros((0, CLASSES), np.float32)
        if self._float_session is None:
            self._float_session = self._open(threads=self.threads, precision="fp32")
        batch = np.ascontiguousarray(batch, np.uint8)
        size = self.batch_size
        out = [
            self._float_session.run(None, {"pixels": batch[i : i + size]})[1]
            for i in range(0, len(batch), size)
        ]
        return np.concatenate(out).astype(np.float32, copy=False)

    def _open(self, *, threads: int, precision: str):
        if not self.graph.is_file():
            raise FileNotFoundError(f"the exported graph {self.graph} is gone")
        path = self.graph
        if precision == "int8":
            path = int8_graph(path, self.spec.preprocessing)
        return cpu_session(path, threads)


def cpu_session(path: Path, threads: int):
    """An ONNX Runtime CPU session for the graph at `path`, fully optimized, on `threads`.

    Example:
        >>> cpu_session(Path("lite0.onnx"), 4).get_inputs()[0].name  # doctest: +SKIP
        'pixels'
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
