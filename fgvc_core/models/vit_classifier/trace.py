"""What ``VitClassifier.trace`` returns: the prediction, every block's attention and its rollout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from fgvc_core.models.base import ExplanationMap, to_input_pixels

DEFAULT_MAP = "attention rollout"  # the spec's default_map
HEAD = "vit"  # the one head's name


@dataclass(frozen=True)
class AttentionState:
    """What the rollout options do not change: the input, every block's attention and the logits.

    ``trace(None, <rollout options>, cache=trace.cache)`` reruns only the O(L·N²) rollout, no ViT pass.
    """

    x: torch.Tensor  # (B, C, H, W) the network input (CPU)
    attentions: tuple[torch.Tensor, ...]  # per block (B, H, N, N) softmax probabilities
    logits: torch.Tensor  # (B, K)
    config: dict[str, Any] = field(repr=False)  # the model's build config, to refuse a cache across models
    owner: int = field(default=0, repr=False)  # id() of the model that made it


@dataclass(frozen=True)
class VitTrace:
    """One traced batch: prediction, attention, rollout ``(B, gh, gw)`` and the rollout options used."""

    probs: torch.Tensor  # (B, K)
    attentions: tuple[torch.Tensor, ...]
    rollout: torch.Tensor  # (B, gh, gw), each image max-normalised
    options: dict[str, Any]  # head_fusion, rollout_query, discard_ratio, start_layer
    cache: AttentionState

    @property
    def logits(self) -> dict[str, torch.Tensor]:
        return {HEAD: self.cache.logits}

    @property
    def head_probs(self) -> dict[str, torch.Tensor]:
        return {HEAD: self.probs}

    def default_map(self, row: int = 0) -> ExplanationMap:
        """The attention rollout of image ``row`` over the network input's pixels, in [0, 1]."""
        return ExplanationMap(to_input_pixels(self.rollout[row], tuple(self.cache.x.shape[-2:])), DEFAULT_MAP)
