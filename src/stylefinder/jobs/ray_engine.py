"""Embedding on a Ray cluster: `build_index(..., engine="ray")` decodes, embeds and names colours
on Ray workers while the scan, the hashing, the commits and the checkpoints stay on the driver.

The images go to Ray Data as (key, path) rows; `map_batches` runs them through a pool of actors,
each of which loads the ONNX graph once (its bytes travel through Ray's object store, so workers
need neither torch nor the driver's cache) and embeds its batches one thread per actor, as local
indexing's workers do. Batches stream back as they finish and feed the same commit path as
local indexing, in the same `StreamBatch` form; a bad image comes back as a failure with its
reason. Ray Data restarts an actor that dies and retries its batch.

Example:
    >>> stream = RayStream(embedder, address="auto", workers=4)  # doctest: +SKIP
    >>> for batch in stream.embed_stream([("sku-1", "photos/1.jpg")]):  # doctest: +SKIP
    ...     print(batch.keys, batch.vectors.shape)
    ['sku-1'] (1, 1280)
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from stylefinder.embed.base import CLASSES, StreamBatch
from stylefinder.embed.onnx import OnnxEmbedder
from stylefinder.errors import BadImageError, StylefinderError

RAY_EXTRA = "pip install 'stylefinder[ray]'"
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a one-machine cluster on 127.0.0.1
DEFAULT_RAY_BATCH = 32  # images per Ray Data batch: an actor's unit of work and of retry


class RayStream:
    """`embed_stream` of `embedder` (an `OnnxEmbedder`) run by `workers` Ray actors on the
    cluster at `address` (None: a local cluster started for this run, on 127.0.0.1, unless
    `RAY_ADDRESS` names one; "auto": the running one;
    "ray://host:10001": a remote one through Ray Client).

    Example:
        >>> RayStream(embedder, workers=2).space == embedder.space  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        embedder: OnnxEmbedder,
        *,
        address: str | None = None,
        workers: int | None = None,
        batch_size: int = DEFAULT_RAY_BATCH,
    ) -> None:
        if not isinstance(embedder, OnnxEmbedder):
            raise StylefinderError(
                "--engine ray runs the exported ONNX graph: index with --runtime onnx"
            )
        if embedder.precision != "fp32":
            raise StylefinderError("--engine ray embeds with --precision fp32 only, for now")
        self.embedder, self.space = embedder, embedder.space
        self.address, self.workers, self.batch_size = address, workers, max(1, batch_size)

    def embed_stream(
        self,
        sources: Iterable[tuple[object, object]],
        *,
        annotate: Callable | None = None,
    ) -> Iterator[StreamBatch]:
        """Embed (key, path) pairs on the cluster; yields a `StreamBatch` per finished batch
        (in the order batches finish, keys as given). `annotate` names colours on the workers
        when it is given (any callable: the workers run `recognition.image_colours`)."""
        rows = [{"key": str(key), "path": str(path)} for key, path in sources]
        if not rows:
            return
        # Ray's own variable, else a new local cluster even where another one runs on this
        # machine (plain ray.init() would join that one)
        address = self.address or os.environ.get("RAY_ADDRESS") or "local"
        ray = _ray(local=address == "local")
        started = not ray.is_initialized()
        if started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            yield from self._run(ray, rows, annotate)
        finally:
            if started:  # a cluster (or connection) of this run's own
                ray.shutdown()

    def _run(self, ray, rows: list[dict], annotate: Callable | None) -> Iterator[StreamBatch]:
        embedder = self.embedder
        spec = {
            "graph": ray.put(Path(embedder.graph).read_bytes()),
            "backbone": embedder.space.backbone,
            "pooling": embedder.space.pooling,
            "fingerprint": embedder.space.weights_fingerprint,
            "max_pixels": embedder.max_pixels,
            "colours": annotate is not None,
        }
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        blocks = max(workers, -(-len(rows) // self.batch_size))  # every actor gets work
        dataset = ray.data.from_items(rows, override_num_blocks=min(blocks, len(rows)))
        embedded = dataset.map_batches(
            EmbedActor,
            fn_constructor_kwargs=spec,
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            yield _stream_batch(batch, embedder.space.dim)


class EmbedActor:
    """A Ray Data actor: the ONNX graph loaded once, then batches of (key, path) rows embedded
    on one thread, with their colours named from the same decoded image."""

    def __init__(
        self,
        graph,
        backbone: str,
        pooling: str,
        fingerprint: str,
        max_pixels: int,
        colours: bool,
    ) -> None:
        import ray

        data = ray.get(graph) if isinstance(graph, ray.ObjectRef) else graph
        path = Path(tempfile.mkdtemp(prefix="stylefinder-ray-")) / "graph.onnx"
        path.write_bytes(data)
        self.embedder = OnnxEmbedder(
            backbone,
            path,
            pooling=pooling,
            fingerprint=fingerprint,
            threads=1,
            max_pixels=max_pixels,
        )
        self.annotate = None
        if colours:
            from stylefinder.recognize.recognition import image_colours

            self.annotate = image_colours

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = list(zip(batch["key"].tolist(), batch["path"].tolist(), strict=True))
        keys, vectors, notes, probabilities, failed = [], [], [], [], []
        for done in self.embedder.embed_stream(pairs, workers=1, annotate=self.annotate):
            keys += done.keys
            vectors.append(done.vectors)
            notes += done.notes
            if done.probabilities is not None:
                probabilities.append(done.probabilities)
            failed += [(key, error.reason) for key, error in done.failures]
        dim = self.embedder.space.dim
        stacked = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
        missing = np.zeros((len(failed), dim), np.float32)
        out = {
            "key": np.array(keys + [key for key, _ in failed], dtype=object),
            "ok": np.array([True] * len(keys) + [False] * len(failed)),
            "vector": np.concatenate([stacked, missing]).astype(np.float32),
            "note": np.array(notes + [None] * len(failed), dtype=object),
            "reason": np.array([None] * len(keys) + [r for _, r in failed], dtype=object),
        }
        if self.embedder.has_head:  # every batch the same columns: zeros for failed rows
            given = np.concatenate(probabilities) if probabilities else np.zeros((0, CLASSES))
            out["probabilities"] = np.concatenate([given, np.zeros((len(failed), CLASSES))])
            out["probabilities"] = out["probabilities"].astype(np.float32)
        return out


def _stream_batch(batch: dict[str, np.ndarray], dim: int) -> StreamBatch:
    """A Ray Data batch of `EmbedActor` rows as the `StreamBatch` local indexing yields."""
    ok = np.asarray(batch["ok"], bool)
    keys = [str(key) for key in batch["key"][ok]]
    vectors = np.asarray(batch["vector"], np.float32).reshape(-1, dim)[ok]
    notes = [None if note is None else str(note) for note in batch["note"][ok]]
    failures = [
        (str(key), BadImageError(f"{key}: {reason}"))
        for key, reason in zip(batch["key"][~ok], batch["reason"][~ok], strict=True)
    ]
    probabilities = batch.get("probabilities")
    if probabilities is not None:
        probabilities = np.asarray(probabilities, np.float32)[ok]
    return StreamBatch(keys, vectors, failures, notes, probabilities)


def _ray(*, local: bool = False):
    """The `ray` module; with `local`, set so that a cluster started here listens on 127.0.0.1
    only (Ray 2.60 otherwise swaps 127.0.0.1 for the host's address and binds all interfaces)."""
    if local:
        loopback_only()
    try:
        import ray
        import ray.data  # Ray Data is the part this uses
    except ImportError:
        raise StylefinderError(f"--engine ray needs Ray: {RAY_EXTRA}") from None
    return ray


def loopback_only() -> None:
    """Make the Ray clusters this process starts (`ray.init()` without an address, or
    `ray.cluster_utils.Cluster`) use 127.0.0.1 for every server; call before starting one.

    Ray's own switch for single-machine clusters (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the
    default on macOS and Windows) takes the loopback address as the node's and binds to it; it
    is read when `ray` is imported, so where `ray` is already imported its constant is set too.

    Example:
        >>> loopback_only()  # doctest: +SKIP
        >>> ray.init(num_cpus=2)  # doctest: +SKIP  (its ports: 127.0.0.1 only)
    """
    os.environ[LOOPBACK_SWITCH] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
