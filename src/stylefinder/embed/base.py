"""What an embedder is: images in, L2-normalized float32 vectors (and class probabilities) out.

`Embedder` is the protocol the rest of stylefinder uses. `BaseEmbedder` implements it on top
of one method, `_infer` (a batch of uint8 network inputs -> vectors and probabilities), so an
implementation (`OnnxEmbedder`, `TorchEmbedder`, a test's fake) only says how a batch runs.

Example:
    >>> from stylefinder.embed.load import load_embedder
    >>> embedder = load_embedder("efficientnet-lite0")  # doctest: +SKIP
    >>> embedder.embed(["a.jpg", "b.png"]).shape  # doctest: +SKIP
    (2, 1280)
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from stylefinder.catalog.images import DEFAULT_MAX_PIXELS, ImageSource, load_image
from stylefinder.embed.preprocess import draft_request, to_input
from stylefinder.embed.registry import BackboneSpec
from stylefinder.errors import BadImageError
from stylefinder.types import EmbeddingSpace

STREAM_BATCH = 16  # images per batch in embed_stream: small batches keep every worker fed
CLASSES = 1000  # ImageNet classes of the backbones' heads

Outputs = tuple[np.ndarray, np.ndarray | None]  # vectors (N, D), probabilities (N, 1000) or None
BatchRunner = Callable[[np.ndarray], Outputs]


class StreamBatch(NamedTuple):
    """One batch of `Embedder.embed_stream`: vectors (N, D) for `keys`, in order."""

    keys: list[object]
    vectors: np.ndarray
    failures: list[tuple[object, Exception]]  # (key, BadImageError) of images that failed
    notes: list[object]  # what `annotate` said about each image of `keys` (None without it)
    probabilities: np.ndarray | None  # ImageNet probabilities (N, 1000); None without a head


@runtime_checkable
class Embedder(Protocol):
    """Images -> unit vectors in one `space`; what indexing, queries and recognition use.

    `has_head`: the model also gives ImageNet class probabilities (`embed_and_classify`).
    """

    spec: BackboneSpec
    space: EmbeddingSpace
    max_pixels: int
    has_head: bool
    threads: int

    def decode(self, source: ImageSource) -> Image.Image: ...

    def preprocess(self, source: ImageSource) -> np.ndarray: ...

    def run(self, batch: np.ndarray) -> Outputs: ...

    def embed(self, sources: Sequence[ImageSource]) -> np.ndarray: ...

    def embed_one(self, source: ImageSource) -> np.ndarray: ...

    def embed_and_classify(self, sources: Sequence[ImageSource]) -> Outputs: ...

    def classify_inputs(self, batch: np.ndarray) -> np.ndarray: ...

    def classify(self, source: ImageSource) -> np.ndarray: ...

    def embed_stream(
        self,
        sources: Iterable[tuple[object, ImageSource]],
        *,
        workers: int | None = None,
        annotate: Callable[[Image.Image], object] | None = None,
    ) -> Iterator[StreamBatch]: ...


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity and container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Threads for inference and decoding: $STYLEFINDER_THREADS, else every usable core.

    Example:
        >>> default_threads() >= 1
        True
    """
    value = os.environ.get("STYLEFINDER_THREADS", "").strip()
    if not value:
        return cpu_count()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"STYLEFINDER_THREADS must be a positive whole number, not {value!r}")
    return int(value)


class BaseEmbedder(ABC):
    """The `Embedder` protocol over `_infer`: decoding, preprocessing, batching, streaming.

    A subclass sets `has_head`, implements `_infer`, then calls `_set_space`.
    """

    space: EmbeddingSpace
    has_head: bool = False

    def __init__(
        self,
        spec: BackboneSpec,
        *,
        batch_size: int = 64,
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.spec = spec
        self.batch_size = max(1, batch_size)
        self.threads = threads or default_threads()
        self.max_pixels = max_pixels
        self._draft = draft_request(spec.preprocessing)

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> Outputs:
        """One batch of inputs (N, S, S, 3) uint8 -> (vectors, probabilities or None)."""

    def _set_space(self, pooling: str, fingerprint: str, precision: str) -> None:
        """`space`, with the dimension the model really gives (a tiny model's is small)."""
        dim = int(self._infer(np.zeros((1, *self.input_shape), np.uint8))[0].shape[1])
        self.space = EmbeddingSpace(self.spec.name, pooling, fingerprint, dim, precision)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The network's input per image: uint8 pixels (size, size, 3)."""
        size = self.spec.preprocessing.input_size
        return (size, size, 3)

    def decode(self, source: ImageSource) -> Image.Image:
        """Decode one image as RGB, at the reduced JPEG scale the network input still allows;
        `BadImageError` for anything that is not a usable image."""
        size, side = self._draft
        return load_image(source, max_pixels=self.max_pixels, draft_size=size, draft_side=side)

    def preprocess(self, source: ImageSource) -> np.ndarray:
        """Decode and preprocess one image to the network's uint8 (S, S, 3) input.

        Example:
            >>> embedder.preprocess("shirt.jpg").shape  # doctest: +SKIP
            (224, 224, 3)
        """
        return to_input(self.decode(source), self.spec.preprocessing)

    def run(self, batch: np.ndarray) -> Outputs:
        """Inputs (N, S, S, 3) uint8 -> (unit vectors (N, D) float32, ImageNet probabilities
        (N, 1000) or None), in batches of `batch_size`, each one run of the model.

        Example:
            >>> vectors, _ = embedder.run(np.zeros((2, 224, 224, 3), np.uint8))  # doctest: +SKIP
            >>> vectors.shape  # doctest: +SKIP
            (2, 1280)
        """
        if not len(batch):
            classes = np.zeros((0, CLASSES), np.float32) if self._gives_probabilities else None
            return np.zeros((0, self.space.dim), np.float32), classes
        size = self.batch_size
        pixels = np.ascontiguousarray(batch, np.uint8)
        parts = [self._infer(pixels[i : i + size]) for i in range(0, len(pixels), size)]
        vectors = np.concatenate([v for v, _ in parts]).astype(np.float32, copy=False)
        if parts[0][1] is None:
            return vectors, None
        return vectors, np.concatenate([p for _, p in parts]).astype(np.float32, copy=False)

    @property
    def _gives_probabilities(self) -> bool:
        """Whether `run` gives probabilities (an int8 graph has a head but does not)."""
        return self.has_head

    def embed(self, sources: Sequence[ImageSource]) -> np.ndarray:
        """Decode, preprocess and embed images; any bad image raises BadImageError.

        Example:
            >>> embedder.embed(["a.jpg", "b.png"]).shape  # doctest: +SKIP
            (2, 1280)
        """
        if not sources:
            return np.zeros((0, self.space.dim), np.float32)
        return self.run(np.stack([self.preprocess(s) for s in sources]))[0]

    def embed_one(self, source: ImageSource) -> np.ndarray:
        """One image -> one unit vector (D,)."""
        return self.embed([source])[0]

    def embed_and_classify(self, sources: Sequence[ImageSource]) -> Outputs:
        """Unit vectors (N, D) and ImageNet probabilities (N, 1000) of images, from one run of
        the model; the probabilities are None when the model has no ImageNet head.

        Example:
            >>> vectors, probabilities = embedder.embed_and_classify(["a.jpg"])  # doctest: +SKIP
            >>> vectors.shape, probabilities.shape  # doctest: +SKIP
            ((1, 1280), (1, 1000))
        """
        inputs = np.stack([self.preprocess(s) for s in sources])
        vectors, probabilities = self.run(inputs)
        if probabilities is None and self.has_head:  # int8: the float graph's head
            probabilities = self.classify_inputs(inputs)
        return vectors, probabilities

    def classify_inputs(self, batch: np.ndarray) -> np.ndarray:
        """Inputs (N, S, S, 3) uint8 -> ImageNet probabilities (N, 1000), in batches.

        Example:
            >>> inputs = np.zeros((2, 224, 224, 3), np.uint8)
            >>> embedder.classify_inputs(inputs).shape  # doctest: +SKIP
            (2, 1000)
        """
        if not self.has_head:
            raise ValueError(f"{self.spec.name} weights have no ImageNet head")
        if not len(batch):
            return np.zeros((0, CLASSES), np.float32)
        return self.run(batch)[1]

    def classify(self, source: ImageSource) -> np.ndarray:
        """ImageNet class probabilities (1000,) of one image.

        Example:
            >>> embedder.classify("shirt.jpg").argmax()  # doctest: +SKIP
            652
        """
        return self.classify_inputs(self.preprocess(source)[None])[0]

    def embed_stream(
        self,
        sources: Iterable[tuple[object, ImageSource]],
        *,
        workers: int | None = None,
        annotate: Callable[[Image.Image], object] | None = None,
    ) -> Iterator[StreamBatch]:
        """Embed (key, source) pairs in batches, in order, keeping every core busy.

        Yields a `StreamBatch` (keys, vectors, failures, notes, probabilities) per batch; a bad
        image lands in `failures` with its error instead of stopping the stream. The ImageNet
        probabilities come from the same run as the vectors (None without a float head).
        `annotate(image)`, when given, runs on each decoded image in the same worker (so the
        image is decoded once) and its result is the image's entry in `notes`. Each of `workers`
        threads decodes a batch and runs it through `_stream_runner(workers)`.

        Example:
            >>> stream = embedder.embed_stream(enumerate(paths))  # doctest: +SKIP
            >>> batch = next(stream)  # doctest: +SKIP
            >>> batch.keys[:2], batch.vectors.shape, batch.probabilities.shape  # doctest: +SKIP
            ([0, 1], (16, 1280), (16, 1000))
        """
        workers = max(1, workers or self.threads)
        run = self._stream_runner(workers)
        size = min(self.batch_size, STREAM_BATCH)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="embed") as pool:
            pending: deque = deque()
            for chunk in _chunks(sources, size):
                pending.append(pool.submit(self._embed_chunk, chunk, run, annotate))
                if len(pending) > workers:  # a bounded look-ahead keeps memory flat
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _stream_runner(self, workers: int) -> BatchRunner:
        """A batch -> outputs function that `workers` threads may call at once; by default
        one batch at a time, on the model's own threads, while the workers decode."""
        lock = threading.Lock()

        def run_locked(batch: np.ndarray) -> Outputs:
            with lock:
                return self._infer(batch)

        return run_locked

    def _embed_chunk(self, chunk, run: BatchRunner, annotate) -> StreamBatch:
        keys, inputs, failures, notes = [], [], [], []
        for key, source in chunk:
            try:
                image = self.decode(source)
                inputs.append(to_input(image, self.spec.preprocessing))
            except BadImageError as exc:
                failures.append((key, exc))
                continue
            keys.append(key)
            notes.append(annotate(image) if annotate is not None else None)
        if not inputs:
            empty = np.zeros((0, self.space.dim), np.float32)
            return StreamBatch(keys, empty, failures, notes, None)
        vectors, probabilities = run(np.ascontiguousarray(np.stack(inputs), np.uint8))
        return StreamBatch(keys, np.asarray(vectors, np.float32), failures, notes, probabilities)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
