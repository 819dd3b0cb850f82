"""What a backbone's loader returns: its torch modules (and a text tower's tokenizer).

Example:
    >>> LoadedBackbone.__dataclass_fields__.keys()
    dict_keys(['features', 'classifier', 'source', 'text'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class LoadedText:
    """A loaded text tower: `encoder` maps token ids and an attention mask (B,L) int64 to unit
    vectors (B,D) in the image tower's space. `tokenizer` is the tokenizer as the JSON of the
    `tokenizers` library (what the query path runs, without torch); texts are cut to
    `max_length` tokens, padded with `pad_id` (to `max_length` when `pad_to_max`, as SigLIP
    was trained). `logit_scale` turns cosines into the logits of zero-shot classification."""

    encoder: torch.nn.Module
    tokenizer: str
    pad_id: int
    max_length: int
    logit_scale: float
    pad_to_max: bool = False


@dataclass
class LoadedBackbone:
    """A loaded network: `features` maps (B,3,H,W) to feature maps (B,C,h,w).

    `classifier`, when the weights have an ImageNet head, maps average-pooled features (B,C) to
    1,000 ImageNet logits. `source` says where the weights came from. `text`, for a model that
    embeds text and images in one space, is its text tower.
    """

    features: torch.nn.Module
    classifier: torch.nn.Module | None
    source: str
    text: LoadedText | None = None
