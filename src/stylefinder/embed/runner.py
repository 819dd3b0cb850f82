"""Run a backbone over images: decode -> preprocess -> batched inference -> unit vectors.

ONNX Runtime is the default runtime (several times faster than eager PyTorch on a CPU); the
graph is exported once per backbone, pooling and weights, and cached on disk. The torch runtime
is kept as the reference. PyTorch is only needed to load weights and export them: an embedder
for an index whose graph is already exported (`Embedder.exported`) runs without importing it.

Example:
    >>> embedder = Embedder("efficientnet-lite0")  # doctest: +SKIP
    >>> embedder.embed(["a.jpg", "b.png"]).shape  # doctest: +SKIP
    (2, 1280)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from stylefinder.catalog.images import DEFAULT_MAX_PIXELS, ImageSource, load_image
from stylefinder.embed.backbones import DEFAULT_BACKBONE, POOLINGS, get_backbone
from stylefinder.embed.preprocess import draft_request, to_input
from stylefinder.embed.quantize import quantize_int8
from stylefinder.errors import BackboneUnavailableError, BadImageError
from stylefinder.io.files import atomic_write
from stylefinder.types import EmbeddingSpace

log = logging.getLogger(__name__)
RUNTIMES = ("onnx", "torch")
PRECISIONS = ("fp32", "int8")
CALIBRATION_IMAGES = 100
STREAM_BATCH = 16  # images per batch in embed_stream: small batches keep every worker fed
GRAPH_VERSION = "u8h"  # bump when the exported graph's inputs or outputs change


def cache_dir() -> Path:
    """Where exported ONNX graphs are kept: $STYLEFINDER_CACHE, else ~/.cache/stylefinder."""
    if os.environ.get("STYLEFINDER_CACHE"):
        return Path(os.environ["STYLEFINDER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stylefinder"


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


class StreamBatch(NamedTuple):
    """One batch of `Embedder.embed_stream`: vectors (N, D) for `keys`, in order."""

    keys: list[object]
    vectors: np.ndarray
    failures: list[tuple[object, Exception]]  # (key, BadImageError) of images that failed
    notes: list[object]  # what `annotate` said about each image of `keys` (None without it)
    probabilities: np.ndarray | None  # ImageNet probabilities (N, 1000); None without a head


class Embedder:
    """Turns images into L2-normalized float32 vectors with one backbone.

    Example:
        >>> embedder = Embedder("efficientnet-lite0", runtime="torch")  # doctest: +SKIP
        >>> embedder.embed_one("shirt.jpg").shape  # doctest: +SKIP
        (1280,)
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        *,
        pooling: str | None = None,
        weights: str | None = None,
        runtime: str = "onnx",
        precision: str = "fp32",
        batch_size: int = 64,
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        graph: Path | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.spec = get_backbone(backbone)
        self.pooling = pooling or self.spec.default_pooling
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}"
            )
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose {' or '.join(PRECISIONS)}")
        if precision == "int8" and runtime != "onnx":
            raise ValueError("int8 precision needs the onnx runtime")
        self.runtime = runtime
        self.precision = precision
        self.batch_size = max(1, batch_size)
        self.threads = threads or default_threads()
        self.max_pixels = max_pixels
        self._draft = draft_request(self.spec.preprocessing)
        if graph is not None:  # an exported graph: ONNX Runtime alone, no torch
            if runtime != "onnx" or fingerprint is None:
                raise ValueError("an exported graph runs on the onnx runtime, with its fingerprint")
            self.loaded = self.model = self._graph = None
            self._graph_path = Path(graph)
        else:
            fingerprint = self._load_torch(weights)
            self._graph_path = cache_dir() / "onnx" / f"{self._graph_name}.onnx"
        self._session = self._onnx_session() if runtime == "onnx" else None
        if graph is None and runtime == "onnx":  # later embedders of these weights: no torch
            weights_id = self.spec.weights_id(weights)
            _remember_export(weights_id, self.pooling, self._graph_path, fingerprint)
        self._stream_session = None  # one-thread twin of _session for embed_stream's workers
        self._float_session = None  # the float graph, for int8 embedders' classify_inputs
        if graph is not None:  # the graph's second output: ImageNet probabilities
            self.has_head = len(self._session.get_outputs()) > 1
        else:
            self.has_head = self.loaded.classifier is not None
        dim = int(self.embed_inputs(np.zeros((1, *self.input_shape), np.uint8)).shape[1])
        self.space = EmbeddingSpace(self.spec.name, self.pooling, fingerprint, dim, precision)

    @classmethod
    def exported(
        cls, space: EmbeddingSpace, *, max_pixels: int = DEFAULT_MAX_PIXELS, **options
    ) -> Embedder | None:
        """An ONNX Runtime embedder for vectors of `space` (an index's header) from the graph
        exported earlier for its backbone, pooling and weights fingerprint, without importing
        torch; None when no such graph is cached (make an `Embedder`, which exports it).

        Example:
            >>> embedder = Embedder.exported(store.header.space)  # doctest: +SKIP
        """
        stem = f"{space.backbone}-{space.pooling}-{space.weights_fingerprint}"
        graphs = sorted((cache_dir() / "onnx").glob(f"{stem}*-{GRAPH_VERSION}.onnx"))
        if not graphs:
            return None
        return cls(
            space.backbone,
            pooling=space.pooling,
            precision=space.precision,
            max_pixels=max_pixels,
            graph=graphs[-1],
            fingerprint=space.weights_fingerprint,
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
    ) -> Embedder | None:
        """An ONNX Runtime embedder, without torch, from the graph an earlier `Embedder`
        exported for these same weights (the same file, size and modification time); None when
        there is none (make an `Embedder`).

        Example:
            >>> Embedder.for_weights("efficientnet-lite0") or Embedder()  # doctest: +SKIP
        """
        spec = get_backbone(backbone)
        pooling = pooling or spec.default_pooling
        weights_id = spec.weights_id(weights)
        known = _exports().get(f"{weights_id}|{pooling}") if weights_id is not None else None
        if not isinstance(known, dict):
            return None
        graph = cache_dir() / "onnx" / str(known.get("graph", ""))
        if not graph.is_file() or not known.get("fingerprint"):
            return None
        return cls(
            backbone,
            pooling=pooling,
            precision=precision,
            graph=graph,
            fingerprint=str(known["fingerprint"]),
            **options,
        )

    def _load_torch(self, weights: str | None) -> str:
        """Load the weights into torch modules (for the torch runtime and for exporting);
        returns their fingerprint."""
        try:
            import torch
        except ImportError as exc:
            raise BackboneUnavailableError(
                f"{self.spec.name}: loading its weights needs PyTorch, which is not installed "
                "(pip install 'stylefinder[torch]'); querying an index needs it only until its "
                "graph is exported, once, by an install that has it"
            ) from exc

        from stylefinder.embed.networks import EmbeddingWithHead, PooledEmbedding

        self.loaded = self.spec.load(weights)
        prep = self.spec.preprocessing
        self.model = PooledEmbedding(self.loaded.features, self.pooling, prep.mean, prep.std).eval()
        head = self.loaded.classifier
        # what runs: the embedding, plus the ImageNet head on the same features where there is one
        self._graph = self.model if head is None else EmbeddingWithHead(self.model, head).eval()
        torch.set_num_threads(self.threads)
        fingerprint = state_fingerprint(self.model, skip=("mean", "std"))  # the weights alone
        self._graph_name = "-".join(
            [self.spec.name, self.pooling, fingerprint]
            + ([] if head is None else [state_fingerprint(head)[:8]])
            + [GRAPH_VERSION]
        )
        return fingerprint

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The network's input per image: uint8 pixels (size, size, 3)."""
        size = self.spec.preprocessing.input_size
        return (size, size, 3)

    def preprocess(self, source: ImageSource) -> np.ndarray:
        """Decode and preprocess one image to the network's uint8 (S, S, 3) input.

        Raises `BadImageError` for anything that is not a usable image.
        """
        return to_input(self.decode(source), self.spec.preprocessing)

    def decode(self, source: ImageSource) -> Image.Image:
        """Decode one image as RGB, at the reduced JPEG scale the network input still allows."""
        size, side = self._draft
        return load_image(source, max_pixels=self.max_pixels, draft_size=size, draft_side=side)

    def embed_inputs(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed inputs (N, S, S, 3) uint8 -> unit vectors (N, D), in batches."""
        return self._run_inputs(batch)[0]

    def embed(self, sources: Sequence[ImageSource]) -> np.ndarray:
        """Decode, preprocess and embed images; any bad image raises BadImageError."""
        if not sources:
            return np.zeros((0, self.space.dim), np.float32)
        return self.embed_inputs(np.stack([self.preprocess(s) for s in sources]))

    def embed_one(self, source: ImageSource) -> np.ndarray:
        """One image -> one unit vector (D,)."""
        return self.embed([source])[0]

    def embed_and_classify(
        self, sources: Sequence[ImageSource]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Unit vectors (N, D) and ImageNet probabilities (N, 1000) of images, from one run of
        the model; the probabilities are None when the weights have no ImageNet head (an int8
        embedder takes them from the float graph, see `_split`).

        Example:
            >>> vectors, probabilities = embedder.embed_and_classify(["a.jpg"])  # doctest: +SKIP
            >>> vectors.shape, probabilities.shape  # doctest: +SKIP
            ((1, 1280), (1, 1000))
        """
        inputs = np.stack([self.preprocess(s) for s in sources])
        vectors, probabilities = self._run_inputs(inputs)
        if probabilities is None and self.has_head:  # int8
            probabilities = self.classify_inputs(inputs)
        return vectors, probabilities

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
        threads decodes a batch and runs it through a one-thread ONNX Runtime session, so
        decoding and inference never fight over cores (one session with several threads scales
        worse on small convolutions). The torch runtime runs one batch at a time, on its own
        threads, while the workers decode.

        Example:
            >>> stream = embedder.embed_stream(enumerate(paths))
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

    def classify(self, source: ImageSource) -> np.ndarray:
        """ImageNet class probabilities (1000,) from the backbone's own head (torch runtime)."""
        import torch

        from stylefinder.embed.networks import pool

        if self.loaded is None or self.loaded.classifier is None:
            raise ValueError(f"{self.spec.name}: no torch ImageNet head loaded")
        pixels = torch.from_numpy(self.preprocess(source)[None])
        with torch.inference_mode():
            features = self.loaded.features(self.model.prepare(pixels))
            logits = self.loaded.classifier(pool(features, "avg"))
        return logits.softmax(dim=1)[0].numpy()

    # -- internals -------------------------------------------------------------------------------

    def _embed_chunk(self, chunk: list[tuple[object, ImageSource]], run, annotate) -> StreamBatch:
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
        vectors, probabilities = run(np.stack(inputs))
        return StreamBatch(keys, np.asarray(vectors, np.float32), failures, notes, probabilities)

    def _stream_runner(self, workers: int):
        """A thread-safe batch -> (vectors, probabilities or None) function for `workers`
        concurrent callers."""
        if self._session is None or workers == 1:
            lock = threading.Lock()

            def run_locked(batch: np.ndarray) -> np.ndarray:
                with lock:
                    return self._run(batch)

            return run_locked
        if self._stream_session is None:
            self._stream_session = self._onnx_session(threads=1)
        session = self._stream_session

        def run_each(batch: np.ndarray) -> np.ndarray:
            # one image per call: a one-thread session is ~20% faster per image at batch 1 than
            # at 16, its activations staying in the core's cache (benchmarks/index_throughput)
            batch = np.ascontiguousarray(batch)
            outputs = [session.run(None, {"pixels": batch[i : i + 1]}) for i in range(len(batch))]
            return self._split([np.concatenate(column) for column in zip(*outputs, strict=True)])

        return run_each

    def _run_inputs(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """`_run` over inputs (N, S, S, 3) in batches of `batch_size`, outputs joined."""
        parts = [
            self._run(inputs[i : i + self.batch_size])
            for i in range(0, len(inputs), self.batch_size)
        ]
        vectors = np.concatenate([v for v, _ in parts]).astype(np.float32, copy=False)
        if parts[0][1] is None:
            return vectors, None
        return vectors, np.concatenate([p for _, p in parts]).astype(np.float32, copy=False)

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One batch of inputs -> (vectors, ImageNet probabilities or None), in one run."""
        pixels = np.ascontiguousarray(batch, np.uint8)
        if self._session is not None:
            return self._split(self._session.run(None, {"pixels": pixels}))
        import torch

        with torch.inference_mode():
            out = self._graph(torch.from_numpy(pixels))
        return self._split([t.numpy() for t in out] if isinstance(out, tuple) else [out.numpy()])

    def _split(self, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """A graph's outputs as (vectors, ImageNet probabilities or None). An int8 graph's
        probabilities are left out: its garment categories are right less often (top-1 0.161
        against 0.206, benchmarks/imagenet_fallback.py), so `classify_inputs` runs the float
        graph instead."""
        probabilities = arrays[1] if len(arrays) > 1 and self.precision == "fp32" else None
        return arrays[0], probabilities

    def _onnx_session(self, threads: int | None = None, precision: str | None = None):
        path = self._graph_path
        if not path.is_file():
            if self._graph is None:
                raise FileNotFoundError(f"the exported graph {path} is gone")
            path = self._graph_path = self._export(path)
        if (precision or self.precision) == "int8":
            quantized = path.with_name(path.name.replace(".onnx", "-int8.onnx"))
            if not quantized.is_file():
                log.info("quantizing %s to int8", self.spec.name)
                quantize_int8(path, quantized, self._calibration_inputs())
            path = quantized
        return _cpu_session(path, threads or self.threads)

    def _calibration_inputs(self) -> np.ndarray:
        """Preprocessed images that set the int8 activation ranges (shipped demo garments)."""
        from stylefinder.catalog.demo import load_demo_arrays

        images = load_demo_arrays()["images"]
        picks = np.linspace(0, len(images) - 1, CALIBRATION_IMAGES).astype(int)
        prep = self.spec.preprocessing
        return np.stack(
            [to_input(Image.fromarray(255 - images[i]).convert("RGB"), prep) for i in picks]
        )

    def _export(self, path: Path) -> Path:
        import torch

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            folder = path.parent
        except OSError:  # read-only home: export next to the temp files instead
            folder = Path(tempfile.mkdtemp(prefix="stylefinder-onnx-"))
            path = folder / path.name
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".onnx.tmp")
        os.close(fd)
        log.info("exporting %s to ONNX at %s", self.spec.name, path)
        dummy = torch.zeros((1, *self.input_shape), dtype=torch.uint8)
        outputs = ["embedding"] + (["probabilities"] if self._graph is not self.model else [])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                self._graph,
                (dummy,),
                tmp,
                input_names=["pixels"],
                output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in ["pixels", *outputs]},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)  # atomic: concurrent exporters never see a half-written graph
        return path

    def classify_inputs(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed inputs (N, S, S, 3) uint8 -> ImageNet probabilities (N, 1000), in batches.

        The batched form of `classify`, with the same head, run in the same graph as the
        embedding; an int8 embedder runs the float graph for it (see `_split`).

        Example:
            >>> x = np.zeros((2, 224, 224, 3), np.uint8)
            >>> embedder.classify_inputs(x).shape  # doctest: +SKIP
            (2, 1000)
        """
        if not self.has_head:
            raise ValueError(f"{self.spec.name} weights have no ImageNet head")
        if not len(batch):
            return np.zeros((0, 1000), np.float32)
        if self.precision != "int8":
            return self._run_inputs(batch)[1]
        if self._float_session is None:
            self._float_session = self._onnx_session(precision="fp32")
        batch = np.ascontiguousarray(batch, np.uint8)
        out = [
            self._float_session.run(None, {"pixels": batch[i : i + self.batch_size]})[1]
            for i in range(0, len(batch), self.batch_size)
        ]
        return np.concatenate(out).astype(np.float32, copy=False)


_EXPORTS_FILE = "exports.json"  # in cache_dir()/onnx: weights id|pooling -> graph, fingerprint


def _exports() -> dict:
    """What `_remember_export` recorded ({} when nothing, or unreadable)."""
    try:
        known = json.loads((cache_dir() / "onnx" / _EXPORTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _remember_export(weights_id: str | None, pooling: str, graph: Path, fingerprint: str) -> None:
    """Record that the weights `weights_id` with `pooling` export to `graph` (best effort: a
    read-only cache only means later embedders load torch again)."""
    if weights_id is None:
        return
    key = f"{weights_id}|{pooling}"
    entry = {"graph": graph.name, "fingerprint": fingerprint}
    known = _exports()
    if known.get(key) == entry or graph.parent != cache_dir() / "onnx":
        return
    known[key] = entry
    try:
        text = json.dumps(known, indent=1, sort_keys=True)
        atomic_write(graph.parent / _EXPORTS_FILE, text.encode("utf-8"))
    except OSError as exc:  # NoSpaceError too
        log.info("cannot record the exported graph %s (%s)", graph.name, exc)


def _cpu_session(path: Path, threads: int):
    """An ONNX Runtime CPU session for the graph at `path`, fully optimized, on `threads`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def state_fingerprint(model, skip: tuple[str, ...] = ()) -> str:
    """A short SHA-256 of a torch module's parameters and buffers (independent of file layout),
    leaving out the top-level entries named in `skip`."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name in skip:
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
