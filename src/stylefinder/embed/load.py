"""Make an embedder from a backbone's weights: load them into torch, and for the onnx runtime
export their graph once (cached) and run it with ONNX Runtime.

Without torch, an embedder comes from a graph exported earlier: `OnnxEmbedder.exported` (for
an index's space) or `OnnxEmbedder.for_weights` (for a weights file).

Example:
    >>> embedder = load_embedder("efficientnet-lite0")  # doctest: +SKIP
    >>> embedder.space.dim  # doctest: +SKIP
    1280
"""

from __future__ import annotations

from stylefinder.catalog.images import DEFAULT_MAX_PIXELS
from stylefinder.embed import cache
from stylefinder.embed.base import BaseEmbedder, default_threads
from stylefinder.embed.onnx import PRECISIONS, OnnxEmbedder
from stylefinder.embed.registry import DEFAULT_BACKBONE, get_backbone
from stylefinder.embed.text_encoder import TextEncoder
from stylefinder.errors import BackboneUnavailableError
from stylefinder.types import EmbeddingSpace

RUNTIMES = ("onnx", "torch")


def load_embedder(
    backbone: str = DEFAULT_BACKBONE,
    *,
    pooling: str | None = None,
    weights: str | None = None,
    runtime: str = "onnx",
    precision: str = "fp32",
    batch_size: int = 64,
    threads: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> BaseEmbedder:
    """An embedder of `backbone` with `weights` (a local file or folder; default the backbone's
    own) and `pooling` (default the backbone's) on `runtime` ("onnx" or "torch") at `precision`
    ("fp32", or "int8" on onnx). Needs torch; the onnx runtime's graph is exported on first use.

    Example:
        >>> embedder = load_embedder("resnet50", weights="tiny-resnet")  # doctest: +SKIP
        >>> embedder.space.dim  # doctest: +SKIP
        32
    """
    spec = get_backbone(backbone)
    pooling = spec.check_pooling(pooling or spec.default_pooling)
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose {' or '.join(PRECISIONS)}")
    if precision == "int8" and runtime != "onnx":
        raise ValueError("int8 precision needs the onnx runtime")
    threads = threads or default_threads()
    options = {"batch_size": batch_size, "threads": threads, "max_pixels": max_pixels}
    if runtime == "torch":
        from stylefinder.embed.torch_runtime import TorchEmbedder

        return TorchEmbedder(backbone, pooling=pooling, weights=weights, **options)

    from stylefinder.embed.export import load_torch_model

    model = load_torch_model(spec, pooling, weights, threads)
    graph = cache.graphs_dir() / f"{model.graph_name}.onnx"
    if not graph.is_file() or (spec.has_text and not cache.text_files(graph)[1].is_file()):
        graph = model.export(graph)
    # later embedders of these weights need no torch
    cache.remember_export(spec.weights_id(weights), pooling, graph, model.fingerprint)
    return OnnxEmbedder(
        backbone,
        graph,
        pooling=pooling,
        fingerprint=model.fingerprint,
        precision=precision,
        **options,
    )


def embedder_for_space(
    space: EmbeddingSpace,
    *,
    runtime: str = "onnx",
    weights: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> BaseEmbedder:
    """The embedder of an index's `space`: on the onnx runtime without other weights, the graph
    exported earlier for it (torch is not imported); else loaded (and exported) through torch.

    Example:
        >>> embedder = embedder_for_space(store.header.space)  # doctest: +SKIP
    """
    if runtime == "onnx" and weights is None:
        embedder = OnnxEmbedder.exported(space, max_pixels=max_pixels)
        if embedder is not None:
            return embedder
    return load_embedder(
        space.backbone,
        pooling=space.pooling,
        weights=weights,
        runtime=runtime,
        precision=space.precision,
        max_pixels=max_pixels,
    )


def text_encoder_for_space(space: EmbeddingSpace, *, weights: str | None = None) -> TextEncoder:
    """The text tower of an index's `space` (a CLIP-family backbone): the one exported with
    its image graph, else loaded through torch and exported; `BackboneUnavailableError` when
    the backbone embeds no text.

    Example:
        >>> text_encoder_for_space(store.header.space).encode_one("red dress")  # doctest: +SKIP
    """
    spec = get_backbone(space.backbone)
    if not spec.has_text:
        raise BackboneUnavailableError(
            f"{spec.name} embeds images only; searching by meaning needs a CLIP-family "
            "backbone (stylefinder backbones lists them)"
        )
    encoder = TextEncoder.exported(space) if weights is None else None
    if encoder is not None:
        return encoder
    embedder = load_embedder(space.backbone, pooling=space.pooling, weights=weights)
    if embedder.space.weights_fingerprint != space.weights_fingerprint:
        raise BackboneUnavailableError(
            f"the weights {weights or 'found'} are not those the index was built with "
            f"({embedder.space.describe()}, not {space.describe()})"
        )
    return TextEncoder(*cache.text_files(embedder.graph))
