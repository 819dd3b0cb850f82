"""Embedding on a Ray cluster: `build_index(..., engine="ray")` decodes, embeds and names colours
on Ray workers while the scan, the hashing, the commits and the checkpoints stay on the driver.

A pool of Ray actors (one CPU each) loads the ONNX graph once per actor (its bytes travel
through Ray's object store, so workers need neither torch nor the driver's cache) and warms up
(the colour kernels, the session's first run) while the driver still hashes files. The driver
sends batches of (key, path) rows, two in flight per actor, and takes results back as they
finish (`ray.wait`): they feed the same commit path as local indexing, in the same
`StreamBatch` form, and the progress bar advances as each batch comes back from the cluster; a
bad image comes back as a failure with its reason. Ray restarts an actor that dies and retries
its batches (`max_restarts`, `max_task_retries`). With `keep_workers`, a pool outlives its run
and the next run in the same process (a feed sync, a scheduler) reuses it, so only the first
run pays for starting it.

Example:
    >>> stream = RayStream(embedder, address="auto", workers=4)  # doctest: +SKIP
    >>> for batch in stream.embed_stream([("sku-1", "photos/1.jpg")]):  # doctest: +SKIP
    ...     print(batch.keys, batch.vectors.shape)
    ['sku-1'] (1, 1280)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from stylefinder.embed.base import CLASSES, StreamBatch
from stylefinder.embed.onnx import OnnxEmbedder
from stylefinder.embed.quantize import int8_graph
from stylefinder.errors import BadImageError, StylefinderError

RAY_EXTRA = "pip install 'stylefinder[ray]'"
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a one-machine cluster on 127.0.0.1
DEFAULT_RAY_BATCH = 32  # images per batch: an actor's unit of work and of retry
IN_FLIGHT = 2  # batches queued per actor, so that none waits for the driver between batches


class RayStream:
    """`embed_stream` of `embedder` (an `OnnxEmbedder`, fp32 or int8) run by `workers` Ray
    actors on the cluster at `address` (None: a local cluster started for this run, on
    127.0.0.1, unless `RAY_ADDRESS` names one; "auto": the running one; "ray://host:10001": a
    remote one through Ray Client). With `keep_workers`, the actors stay up after a run for the
    next one in this process (`release_pools` ends them; so does the end of the process).

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
        keep_workers: bool = False,
    ) -> None:
        if not isinstance(embedder, OnnxEmbedder):
            raise StylefinderError(
                "--engine ray runs the exported ONNX graph: index with --runtime onnx"
            )
        self.embedder, self.space = embedder, embedder.space
        self.address, self.workers, self.batch_size = address, workers, max(1, batch_size)
        self.keep_workers = keep_workers

    def embed_stream(
        self,
        sources: Iterable[tuple[object, object]],
        *,
        annotate: Callable | None = None,
    ) -> Iterator[StreamBatch]:
        """Embed (key, path) pairs on the cluster; yields a `StreamBatch` per finished batch
        (in the order batches finish, keys as given). `annotate` names colours on the workers
        when it is given (any callable: the workers run `recognition.image_colours`)."""
        sources = iter(sources)
        first = next(sources, None)
        if first is None:
            return
        # Ray's own variable, else a new local cluster even where another one runs on this
        # machine (plain ray.init() would join that one)
        address = self.address or os.environ.get("RAY_ADDRESS") or "local"
        ray = _ray(local=address == "local")
        started = not ray.is_initialized()
        if started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            pool = _pool(ray, self.embedder, self.workers, annotate is not None, self.keep_workers)
            try:  # the actors start while the driver goes on scanning and hashing
                yield from pool.embed(_batches(itertools.chain([first], sources), self.batch_size))
            finally:
                if not self.keep_workers:
                    pool.close()
        finally:
            if started:  # a cluster (or connection) of this run's own
                release_pools()
                ray.shutdown()


def _batches(
    sources: Iterator[tuple[object, object]], size: int
) -> Iterator[list[tuple[str, str]]]:
    """(key, path) pairs as text, `size` at a time, read as they are needed."""
    while batch := [(str(key), str(path)) for key, path in itertools.islice(sources, size)]:
        yield batch


class EmbedPool:
    """Ray actors running `EmbedActor` for one graph, and the batches sent to them."""

    def __init__(self, ray, spec: dict, workers: int, dim: int) -> None:
        self.ray, self.dim, self.spec = ray, dim, spec  # the spec's graph refs: kept for restarts
        remote = ray.remote(EmbedActor).options(num_cpus=1, max_restarts=-1, max_task_retries=-1)
        self.actors = [remote.remote(**spec) for _ in range(workers)]
        self.job = ray.get_runtime_context().get_job_id()

    def embed(self, batches: Iterator[list[tuple[str, str]]]) -> Iterator[StreamBatch]:
        """Results of `batches`, as each comes back; IN_FLIGHT batches queued per actor, the
        next one read from `batches` when one comes back."""
        ray, pending = self.ray, {}

        def send(actor) -> None:
            batch = next(batches, None)
            if batch is not None:
                keys, paths = zip(*batch, strict=True)
                pending[actor.embed.remote(list(keys), list(paths))] = actor

        try:
            for _ in range(IN_FLIGHT):
                for actor in self.actors:
                    send(actor)
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                actor = pending.pop(done)
                send(actor)
                yield _stream_batch(ray.get(done), self.dim)
        finally:
            for ref in pending:  # a run stopped early (an error, a closed generator)
                ray.cancel(ref)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        self.actors = []


_POOLS: dict[tuple, EmbedPool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(ray, embedder: OnnxEmbedder, workers: int | None, colours: bool, keep: bool) -> EmbedPool:
    """A pool for `embedder`'s graph: one kept from an earlier run of this process on the same
    cluster connection when `keep`, else a new one."""
    count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    space = embedder.space
    key = (space.backbone, space.pooling, space.weights_fingerprint, embedder.precision)
    key += (embedder.max_pixels, colours, count)
    with _POOLS_LOCK:
        job = ray.get_runtime_context().get_job_id()
        for stale in [k for k, pool in _POOLS.items() if pool.job != job]:
            del _POOLS[stale]  # a connection since shut down: its actors are gone
        if keep and key in _POOLS:
            return _POOLS[key]
        pool = EmbedPool(ray, _spec(ray, embedder, colours), count, space.dim)
        if keep:
            _POOLS[key] = pool
        return pool


def release_pools() -> None:
    """End the actor pools that `keep_workers` runs kept.

    Example:
        >>> release_pools()
    """
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        with contextlib.suppress(Exception):  # a cluster gone already: nothing left to end
            pool.close()


def _spec(ray, embedder: OnnxEmbedder, colours: bool) -> dict:
    graph = Path(embedder.graph)
    quantized = None
    if embedder.precision == "int8":  # the int8 graph travels too: workers need not quantize
        quantized = ray.put(int8_graph(graph, embedder.spec.preprocessing).read_bytes())
    return {
        "graph": ray.put(graph.read_bytes()),
        "int8_graph": quantized,
        "backbone": embedder.space.backbone,
        "pooling": embedder.space.pooling,
        "fingerprint": embedder.space.weights_fingerprint,
        "precision": embedder.precision,
        "max_pixels": embedder.max_pixels,
        "colours": colours,
    }


class EmbedActor:
    """A Ray actor: the ONNX graph loaded once and warmed up, then batches of (key, path) rows
    embedded on one thread, with their colours named from the same decoded image."""

    def __init__(
        self,
        graph,
        int8_graph,
        backbone: str,
        pooling: str,
        fingerprint: str,
        precision: str,
        max_pixels: int,
        colours: bool,
    ) -> None:
        import ray

        def bytes_of(value):
            return ray.get(value) if isinstance(value, ray.ObjectRef) else value

        path = Path(tempfile.mkdtemp(prefix="stylefinder-ray-")) / "graph.onnx"
        path.write_bytes(bytes_of(graph))
        if int8_graph is not None:  # where `quantize.int8_graph` looks for it
            path.with_name("graph-int8.onnx").write_bytes(bytes_of(int8_graph))
        self.embedder = OnnxEmbedder(
            backbone,
            path,
            pooling=pooling,
            fingerprint=fingerprint,
            precision=precision,
            threads=1,
            max_pixels=max_pixels,
        )
        self.annotate = None
        if colours:
            from stylefinder.recognize.recognition import image_colours

            self.annotate = image_colours
        self._warm_up(path.parent)

    def _warm_up(self, folder: Path) -> None:
        """One small image through the whole path (decode, session, colour kernels), so that the
        first real batch does not pay for it."""
        sample = folder / "warm-up.png"
        Image.new("RGB", (64, 80), (30, 40, 120)).save(sample)
        self.embed(["warm-up"], [str(sample)])

    def embed(self, keys: list[str], paths: list[str]) -> dict[str, np.ndarray]:
        """The batch's vectors, colour notes and ImageNet probabilities, and its failures."""
        pairs = list(zip(keys, paths, strict=True))
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
        if probabilities:  # fp32 graphs with an ImageNet head: zeros for failed rows
            given = np.concatenate(probabilities)
            out["probabilities"] = np.concatenate([given, np.zeros((len(failed), CLASSES))])
            out["probabilities"] = out["probabilities"].astype(np.float32)
        return out


def _stream_batch(batch: dict[str, np.ndarray], dim: int) -> StreamBatch:
    """A batch of `EmbedActor` rows as the `StreamBatch` local indexing yields."""
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
