"""Load a backbone's weights into torch and export its graph to ONNX (the `torch` extra).

Importing this module does not import torch; loading does, and says how to install it when it
is missing.

Example:
    >>> model = load_torch_model(get_backbone("efficientnet-lite0"), "gem")  # doctest: +SKIP
    >>> model.export(graphs_dir() / f"{model.graph_name}.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stylefinder.embed.cache import GRAPH_VERSION, text_files
from stylefinder.embed.loaded import LoadedBackbone, LoadedText
from stylefinder.embed.registry import BackboneSpec
from stylefinder.errors import BackboneUnavailableError
from stylefinder.io.files import atomic_write

if TYPE_CHECKING:
    from torch import nn

    from stylefinder.embed.networks import PooledEmbedding

log = logging.getLogger(__name__)


@dataclass
class TorchModel:
    """A backbone's weights loaded into torch: `model` maps uint8 pixels to unit vectors,
    `graph` (what runs and is exported) also to ImageNet probabilities where there is a head."""

    spec: BackboneSpec
    pooling: str
    loaded: LoadedBackbone
    model: PooledEmbedding
    graph: nn.Module
    fingerprint: str  # of the weights alone (not the graph's normalization constants)
    graph_name: str  # the exported graph's file name, without ".onnx"

    @property
    def has_head(self) -> bool:
        return self.loaded.classifier is not None

    def export(self, path: Path) -> Path:
        """Export `graph` to ONNX at `path` atomically (into a temp folder when `path`'s is
        read-only), and a text tower's graph and tokenizer beside it (`cache.text_files`);
        returns where the image graph was written.

        Example:
            >>> model.export(Path("cache/lite0.onnx"))  # doctest: +SKIP
            PosixPath('cache/lite0.onnx')
        """
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
        size = self.spec.preprocessing.input_size
        dummy = torch.zeros((1, size, size, 3), dtype=torch.uint8)
        outputs = ["embedding"] + (["probabilities"] if self.has_head else [])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                self.graph,
                (dummy,),
                tmp,
                input_names=["pixels"],
                output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in ["pixels", *outputs]},
                opset_version=17,
                dynamo=False,
            )
        if self.loaded.text is not None:  # first, so a graph found later has its text tower
            export_text(self.loaded.text, *text_files(path))
        os.replace(tmp, path)  # atomic: concurrent exporters never see a half-written graph
        return path


def export_text(text: LoadedText, graph: Path, settings: Path) -> None:
    """Export a text tower to ONNX at `graph` (inputs `input_ids` and `attention_mask`, output
    `embedding`) and its tokenizer and settings as JSON at `settings`, each atomically.

    Example:
        >>> export_text(loaded.text, *text_files(Path("clip.onnx")))  # doctest: +SKIP
    """
    import torch

    fd, tmp = tempfile.mkstemp(dir=graph.parent, suffix=".onnx.tmp")
    os.close(fd)
    ids = torch.full((1, 8), text.pad_id, dtype=torch.int64)
    inputs = ["input_ids", "attention_mask"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            text.encoder,
            (ids, torch.ones_like(ids)),
            tmp,
            input_names=inputs,
            output_names=["embedding"],
            dynamic_axes={
                **{name: {0: "batch", 1: "tokens"} for name in inputs},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, graph)
    config = {
        "tokenizer": text.tokenizer,
        "pad_id": text.pad_id,
        "max_length": text.max_length,
        "pad_to_max": text.pad_to_max,
        "logit_scale": text.logit_scale,
    }
    atomic_write(settings, json.dumps(config).encode("utf-8"))


def load_torch_model(
    spec: BackboneSpec, pooling: str, weights: str | None = None, threads: int | None = None
) -> TorchModel:
    """Load `weights` (default: the backbone's own) of `spec` into torch modules with `pooling`;
    `threads` sets torch's thread count.

    Example:
        >>> model = load_torch_model(get_backbone("resnet50"), "max", "tiny")  # doctest: +SKIP
        >>> model.fingerprint  # doctest: +SKIP
        '3f9c0a1b2d4e5f60'
    """
    spec.check_pooling(pooling)
    try:
        import torch
    except ImportError as exc:
        raise BackboneUnavailableError(
            f"{spec.name}: loading its weights needs PyTorch, which is not installed "
            "(pip install 'stylefinder[torch]'); querying an index needs it only until its "
            "graph is exported, once, by an install that has it"
        ) from exc

    from stylefinder.embed.networks import EmbeddingWithHead, PooledEmbedding

    loaded = spec.load(weights)
    prep = spec.preprocessing
    model = PooledEmbedding(loaded.features, pooling, prep.mean, prep.std).eval()
    head = loaded.classifier
    # what runs: the embedding, plus the ImageNet head on the same features where there is one
    graph = model if head is None else EmbeddingWithHead(model, head).eval()
    if threads:
        torch.set_num_threads(threads)
    fingerprint = state_fingerprint(model, skip=("mean", "std"))  # the weights alone
    name = "-".join(
        [spec.name, pooling, fingerprint]
        + ([] if head is None else [state_fingerprint(head)[:8]])
        + ([] if loaded.text is None else ["t" + state_fingerprint(loaded.text.encoder)[:8]])
        + [GRAPH_VERSION]
    )
    return TorchModel(spec, pooling, loaded, model, graph, fingerprint, name)


def state_fingerprint(model, skip: tuple[str, ...] = ()) -> str:
    """A short SHA-256 of a torch module's parameters and buffers (independent of file layout),
    leaving out the top-level entries named in `skip`.

    Example:
        >>> state_fingerprint(torch.nn.Linear(2, 2))  # doctest: +SKIP
        'b1946ac92492d234'
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name in skip:
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
