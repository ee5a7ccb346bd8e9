"""What ``RamsTrans.trace`` returns: frozen dataclasses of detached CPU tensors, plus the reusable scale-1 state.

``scales[s]`` describes what scale ``s`` saw and what it proposed:
- ``crop``/``box``: the image this scale classified and where it lies on the network input (scale 1: the whole
  input). ``box_original``: the same box on the uploaded image, when the caller gave its size and preprocess.
- ``attentions``/``rollout``/``mask``/``component``/``proposal_box``: this scale's own attention and the DPPM
  step it drives, on its own patch grid; ``proposal_box`` (its own input pixels) becomes the next scale's
  ``box`` (composed into input pixels). The last scale's proposal is shown but leads nowhere.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fgvc_core.models.base import ExplanationMap, to_input_pixels
from fgvc_core.ops.rollout import attention_rollout, fuse_layers, fused_rollout

ZOOM_CACHE = 4  # later-scale passes a Scale1State keeps (see Scale1State.zoom)
DEFAULT_MAP = "attention rollout (scale 1)"  # the spec's default_map


@dataclass(frozen=True)
class ScaleTrace:
    """One scale of one traced batch (all tensors detached, on CPU)."""

    index: int  # 0-based; head name is f"scale{index + 1}"
    crop: torch.Tensor  # (B, C, H, W) the input this scale classified
    box: torch.Tensor  # (B, 4) xyxy float, network-input pixels
    box_original: torch.Tensor | None  # (B, 4) original-image pixels, or None
    attentions: tuple[torch.Tensor, ...]  # per layer (B, H, N, N) softmax probabilities
    rollout: torch.Tensor  # (B, gh, gw) max-normalised scores
    mask: torch.Tensor  # (B, gh, gw) bool: rollout > threshold * mean
    component: torch.Tensor  # (B, gh, gw) bool: the largest 8-connected component of the mask
    proposal_box: torch.Tensor  # (B, 4) xyxy float, pixels of this scale's crop
    logits: torch.Tensor  # (B, K)
    probs: torch.Tensor  # (B, K) softmax of this scale

    @property
    def head_name(self) -> str:
        return f"scale{self.index + 1}"


@dataclass(frozen=True)
class Scale1State:
    """Everything the DPPM options do not change: the scale-1 input, attention and prediction.

    A later ``trace(..., cache=previous_trace.cache)`` starts from here, so moving the threshold (or head fusion,
    rollout query, discard ratio, start layer) costs one O(L·N²) rollout plus the later scales, never a scale-1 ViT
    pass.
    """

    x: torch.Tensor  # (B, C, H, W) the network input
    attentions: tuple[torch.Tensor, ...]
    logits: torch.Tensor
    config: dict[str, Any] = field(repr=False)  # the model's build config, to refuse a cache across models
    owner: int = field(default=0, repr=False)  # id() of the model that made it (a reloaded model is another)
    # head fusion -> (L, B, N, N) maps, filled on first use. Fusing reads every head of every layer (355 MB at
    # 448 px for a ViT-B), ~10× the cost of the rollout itself, and does not depend on the slider's threshold.
    _fused: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)
    # (scale, boxes) -> (crop, logits, attentions) of a later scale. The proposal box lives on the patch grid, so
    # most threshold steps propose a box seen a step before: its zoomed pass (the costly part of a step) is reused.
    # A few entries only: each holds one scale's attention of every head and layer.
    _zooms: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)
    _zoom_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def zoom(self, scale: int, box: torch.Tensor, compute: Callable[[], tuple]) -> tuple:
        """``compute()`` (a later scale's pass on ``box``) once per ``(scale, box)``; the last ``ZOOM_CACHE`` kept."""
        key = (scale, tuple(box.flatten().tolist()))
        with self._zoom_lock:
            found = self._zooms.get(key)
            if found is not None:
                self._zooms.move_to_end(key)
                return found
        found = compute()
        with self._zoom_lock:
            self._zooms[key] = found
            while len(self._zooms) > ZOOM_CACHE:
                self._zooms.popitem(last=False)
        return found

    def fused_attention(self, head_fusion: str) -> torch.Tensor:
        """The scale-1 attention fused over heads, ``(L, B, N, N)``, computed once per fusion and kept.

        Threads sharing this state may both compute a missing entry; they get equal tensors, and the dict
        assignment is atomic, so no lock is needed.
        """
        fused = self._fused.get(head_fusion)
        if fused is None:
            fused = self._fused[head_fusion] = fuse_layers(self.attentions, head_fusion)
        return fused


def rollout_scores(
    source: Scale1State | Sequence[torch.Tensor], head_fusion: str, discard_ratio: float, query: str, start_layer: int
) -> torch.Tensor:
    """The DPPM's rollout ``(B, N - 1)`` of one scale: the one choice of how it is computed, for the model and the app.

    From a :class:`Scale1State` the kept head-fused maps are reused (only the O(L·N²) chain reruns); from per-layer
    attention ``(B, H, N, N)`` the heads are fused first. Both give the same scores for the same attention.
    """
    if isinstance(source, Scale1State):
        return fused_rollout(source.fused_attention(head_fusion), discard_ratio, query, start_layer)
    return attention_rollout(source, head_fusion, discard_ratio, query, start_layer)


@dataclass(frozen=True)
class RamsTransTrace:
    """A full RAMS-Trans trace: per-scale artefacts, the combined prediction and the options used."""

    scales: tuple[ScaleTrace, ...]
    probs: torch.Tensor  # (B, K) mean of the trained scales' softmaxes (the paper's test rule; w_s > 0)
    options: dict[str, Any]  # threshold(s), head_fusion, rollout_query, discard_ratio, start_layer actually used
    cache: Scale1State  # pass it back as trace(..., cache=trace.cache): no scale-1 pass

    @property
    def logits(self) -> dict[str, torch.Tensor]:
        return {scale.head_name: scale.logits for scale in self.scales}

    @property
    def head_probs(self) -> dict[str, torch.Tensor]:
        """Each scale's softmax ``(B, K)``, by head name (``scale1``, ``scale2``...)."""
        return {scale.head_name: scale.probs for scale in self.scales}

    def default_map(self, row: int = 0) -> ExplanationMap:
        """The scale-1 attention rollout of image ``row`` over the network input's pixels, in [0, 1]."""
        first = self.scales[0]
        return ExplanationMap(to_input_pixels(first.rollout[row], tuple(first.crop.shape[-2:])), DEFAULT_MAP)

    def rollout_with(
        self, scale: int, head_fusion: str, discard_ratio: float, rollout_query: str, start_layer: int
    ) -> torch.Tensor:
        """Scale ``scale``'s rollout ``(B, gh, gw)`` under other rollout options, computed as the proposal computes it.

        With the options the trace used this equals ``scales[scale].rollout``; scale 1 reuses the cached fused maps.
        """
        source = self.cache if scale == 0 else self.scales[scale].attentions
        grid = tuple(self.scales[scale].rollout.shape[-2:])
        return rollout_scores(source, head_fusion, discard_ratio, rollout_query, start_layer).view(-1, *grid)
