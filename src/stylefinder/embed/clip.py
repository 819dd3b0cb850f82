"""CLIP-family backbones through transformers: an image tower and a text tower in one space.

The weights come from the Hugging Face hub where there is internet, else from a local folder
(`--weights DIR`, or the backbone's environment variable) saved by `save_pretrained`. Loading
imports torch and transformers; the query path later runs the exported towers without them.

Example:
    >>> loaded = load_clip(get_backbone("fashion-clip"), "fashion-clip")  # doctest: +SKIP
    >>> loaded.text.max_length  # doctest: +SKIP
    77
"""

from __future__ import annotations

import os

from stylefinder.embed.loaded import LoadedBackbone, LoadedText
from stylefinder.errors import BackboneUnavailableError


def weights_env(name: str) -> str:
    """The environment variable naming a backbone's local weights folder.

    Example:
        >>> weights_env("fashion-clip")
        'STYLEFINDER_FASHION_CLIP_WEIGHTS'
    """
    return "STYLEFINDER_" + name.upper().replace("-", "_") + "_WEIGHTS"


def load_clip(
    name: str, hub: str, weights: str | None, *, input_size: int, install_hint: str
) -> LoadedBackbone:
    """Load a transformers `CLIPModel` and its tokenizer for backbone `name` from `weights` (a
    folder or hub name; default `weights_env(name)`, else the hub repository `hub`) as a
    `LoadedBackbone` with a text tower; `BackboneUnavailableError` saying how to get the
    weights offline, or when they take other than `input_size`-pixel images."""
    try:
        import transformers
    except ImportError as exc:
        raise BackboneUnavailableError(f"{name} needs {install_hint}") from exc
    source = weights or os.environ.get(weights_env(name)) or hub
    try:
        model = transformers.CLIPModel.from_pretrained(source, attn_implementation="eager")
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: mismatched weights
        raise BackboneUnavailableError(
            f"cannot load {name} weights from {source!r} ({type(exc).__name__}). "
            "Offline, provide a local directory: on a machine with internet run "
            '`python -c "from transformers import CLIPModel, AutoTokenizer; '
            f"CLIPModel.from_pretrained('{hub}').save_pretrained('{name}'); "
            f"AutoTokenizer.from_pretrained('{hub}').save_pretrained('{name}')\"`, "
            f"copy the folder here and pass --weights {name} (or set {weights_env(name)})."
        ) from exc
    size = model.config.vision_config.image_size
    if size != input_size:
        raise BackboneUnavailableError(
            f"{name}: the weights in {source!r} take {size}-pixel images, not the "
            f"{input_size} pixels this backbone is registered with"
        )
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise BackboneUnavailableError(f"{name}: {source!r} has no fast tokenizer")
    model.eval()
    from stylefinder.embed.networks import ClipImageFeatures, ClipTextEncoder

    pad_id = tokenizer.pad_token_id
    text = LoadedText(
        encoder=ClipTextEncoder(model).eval(),
        tokenizer=backend.to_str(),
        pad_id=int(pad_id if pad_id is not None else tokenizer.eos_token_id),
        max_length=int(model.config.text_config.max_position_embeddings),
        logit_scale=float(model.logit_scale.detach().exp()),
    )
    return LoadedBackbone(ClipImageFeatures(model).eval(), None, str(source), text)
