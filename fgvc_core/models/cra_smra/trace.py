"""Typed results of CRA-SMRA: one stage's re-attention, one stage's trace, the whole trace and its cache.

Everything in a trace is detached and on the CPU, so the app can keep, slice and plot it after the model has moved
on; the frozen dataclasses make the "never alter shared state" rule visible in the types as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from fgvc_core.models.base import ExplanationMap, to_input_pixels
from fgvc_core.models.cra_smra import smram

# δ at or below 1/e suppresses every channel of every image (see StageTrace.all_suppressed_delta).
ALL_SUPPRESSED_DELTA = math.exp(-1)
DEFAULT_MAP = "enhanced map (stage 5)"  # the spec's default_map


class ReattentionOutput(NamedTuple):
    """What a channel-attention module returns for a stage output ``X`` (B, C, H, W).

    Fields that a variant does not define are ``None`` (``base`` has no importance; only CRAM suppresses).

    Attributes:
        enhanced: ``I ⊗ X``, the channel-enhanced map before the ``Conv_layer`` (for ``base``: ``X``).
        suppressed: ``X_s = S ⊗ X``, the input of the next stage (``base``: ``X``; ``cbam``: ``I ⊗ X``).
        importance: ``I`` (B, C), the sigmoid channel importance.
        importance_softmax: ``I* = softmax(I)`` over channels (CRAM only).
        suppression: ``S`` (B, C): ``ω`` on suppressed channels, 1 elsewhere (CRAM only).
        suppressed_channels: bool (B, C), the channels with ``I*_c ≥ δ·max(I*)`` (CRAM only).
    """

    enhanced: torch.Tensor
    suppressed: torch.Tensor
    importance: torch.Tensor | None = None
    importance_softmax: torch.Tensor | None = None
    suppression: torch.Tensor | None = None
    suppressed_channels: torch.Tensor | None = None


@dataclass(frozen=True)
class StageTrace:
    """One CRAM stage (3, 4 or 5) of one traced batch.

    Attributes:
        stage: 3, 4 or 5.
        stage_output: ``X`` (B, C, H, W), the backbone stage's output (its input is the previous ``X_s``).
        importance: ``I`` (B, C), or None for ``base``.
        importance_softmax: ``I*`` (B, C), CRAM only.
        suppression: ``S`` (B, C), CRAM only.
        suppressed_channels: bool (B, C), where ``S = ω``, CRAM only.
        enhanced: ``X_e`` (B, C_a, H, W) after the ``Conv_layer``: the map the stage's head pools.
        enhanced_mean: channel mean of ``X_e`` (B, H, W) (the paper's Fig. 4 style map).
        reweighted_mean: channel mean of ``I ⊗ X`` (B, H, W): the enhanced map on X's channels, before the
            ``Conv_layer``, comparable with ``suppressed_mean`` and ``stage_mean``.
        suppressed_mean: channel mean of ``X_s`` (B, H, W).
        stage_mean: channel mean of ``X`` (B, H, W).
        pooled: (B, C_a) global max pool of ``X_e``, the stage head's input.
    """

    stage: int
    stage_output: torch.Tensor
    importance: torch.Tensor | None
    importance_softmax: torch.Tensor | None
    suppression: torch.Tensor | None
    suppressed_channels: torch.Tensor | None
    enhanced: torch.Tensor
    enhanced_mean: torch.Tensor
    reweighted_mean: torch.Tensor
    suppressed_mean: torch.Tensor
    stage_mean: torch.Tensor
    pooled: torch.Tensor

    def suppressed_count(self, row: int = 0) -> tuple[int, int]:
        """``(n, C)``: CRAM suppressed n of the stage's C channels for image ``row`` (``(0, C)`` without CRAM)."""
        channels = int(self.stage_output.shape[1])
        if self.suppressed_channels is None:
            return 0, channels
        return int(self.suppressed_channels[row].sum()), channels

    def all_suppressed_delta(self, row: int = 0) -> float | None:
        """The largest δ at which CRAM suppresses every channel of image ``row``: ``min I* / max I*``.

        With I in (0, 1), ``I*_c / max I* = exp(I_c - max I) > 1/e``, so this is always above ``ALL_SUPPRESSED_DELTA``:
        any δ up to it gives ``S = ω`` everywhere, a plain rescaling of X rather than a suppression. None without CRAM.
        """
        if self.importance_softmax is None:
            return None
        i_star = self.importance_softmax[row].double()
        return float(i_star.min() / i_star.max())


@dataclass(frozen=True)
class CraSmraCache:
    """The stage-3 backbone output of one input, reusable while only δ or ω change.

    Stages 1-3 do not depend on δ/ω (the first CRAM sits after stage 3), so a trace with this cache reruns only
    CRAM(3) -> stage 4 -> CRAM(4) -> stage 5 -> CRAM(5) -> heads. ``input_shape``, ``fingerprint`` and
    ``model_key`` identify what it belongs to; a mismatch raises ``ConfigError`` rather than returning a trace of
    another image.

    Attributes:
        stage3: ``X`` of stage 3 (B, C, H, W), detached, on the CPU.
        input_shape: shape of the traced input.
        fingerprint: cheap sums of the input (see ``input_fingerprint``).
        model_key: the model instance, its mode, device/dtype and the versions of the stage 1-3 weights.
        enhanced3: stage 3's Conv_layer output, which does not depend on δ/ω either, so a δ update skips that
            conv too (it is the costliest single step of the update on ResNet50 at 448 px).
    """

    stage3: torch.Tensor
    input_shape: tuple[int, ...]
    fingerprint: tuple[float, ...]
    model_key: tuple
    enhanced3: torch.Tensor | None = None  # stage 3's Conv_layer output X_e (independent of δ/ω), when cached


@dataclass(frozen=True)
class CraSmraTrace:
    """Everything one CRA-SMRA pass computed, for the app and for scripts.

    Attributes:
        stages: per CRAM stage, ordered stage 3, 4, 5.
        logits: per head (``stage3``, ``stage4``, ``stage5``, ``concat``), (B, K).
        head_probs: softmax of each head's logits, (B, K).
        probs: the combined prediction, the mean of the four heads' softmaxes, (B, K).
        smram_maps: SMRAM's spatial softmax maps (B, 3, h, w), ordered stage 3, 4, 5; None without SMRAM.
        l_div: the diversity loss of this batch (scalar), None without SMRAM. The trace computes SMRAM in any
            mode for inspection; ``forward`` only adds it to the loss in training.
        l_div_per_image: (B,) the per-image ``1 - h/3`` whose mean is ``l_div``; None without SMRAM.
        delta: the δ used (None for variants without CRAM).
        omega: the ω used (None for variants without CRAM).
        variant: the model's variant.
        cache: pass it back to ``trace`` with the same input to skip stages 1-3.
        input_size: ``(H, W)`` of the network input.
    """

    stages: tuple[StageTrace, ...]
    logits: dict[str, torch.Tensor]
    head_probs: dict[str, torch.Tensor]
    probs: torch.Tensor
    smram_maps: torch.Tensor | None
    l_div: torch.Tensor | None
    l_div_per_image: torch.Tensor | None
    delta: float | None
    omega: float | None
    variant: str
    cache: CraSmraCache
    input_size: tuple[int, int] | None = None  # (H, W) of the traced input, for default_map

    def default_map(self, row: int = 0) -> ExplanationMap:
        """The last stage's enhanced map (channel mean of ``X_e``) of image ``row`` over the input pixels, in [0, 1].

        Gradient-free, so every trace carries it; the class-specific stage-5 Grad-CAM needs a backward pass
        (``explain.attribution.cam.stage_cams``).
        """
        if self.input_size is None:
            raise ValueError("this trace does not know its input size")
        return ExplanationMap(to_input_pixels(self.stages[-1].enhanced_mean[row], self.input_size), DEFAULT_MAP)

    def stage(self, number: int) -> StageTrace:
        """The trace of stage ``number`` (3, 4 or 5)."""
        for stage in self.stages:
            if stage.stage == number:
                return stage
        raise KeyError(f"no CRAM stage {number}; stages are {[s.stage for s in self.stages]}")

    @property
    def ccmp(self) -> torch.Tensor | None:
        """CCMP of the SMRAM maps (B, h, w): their max over stages 3, 4, 5 at each pixel; None without SMRAM."""
        return None if self.smram_maps is None else smram.ccmp(self.smram_maps)

    @property
    def ccmp_spread(self) -> torch.Tensor | None:
        """``h = Σ_pixels CCMP`` per image (B,): 1 when the stage maps coincide, 3 when disjoint; None without SMRAM."""
        return None if self.smram_maps is None else smram.ccmp_spread(self.smram_maps)


def to_cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    """Detached CPU copy for a trace; floating tensors as float32 (display precision), bools kept."""
    if t is None:
        return None
    t = t.detach()
    return (t if t.dtype == torch.bool else t.float()).cpu()


def input_fingerprint(x: torch.Tensor) -> tuple[float, ...]:
    """Cheap sums that tell one input tensor from another (sum, sum of squares, a position-weighted sum)."""
    flat = x.detach().to("cpu", torch.float64).flatten()
    ramp = torch.linspace(-1.0, 1.0, flat.numel(), dtype=torch.float64)
    return (float(flat.sum()), float((flat * flat).sum()), float((flat * ramp).sum()))


def stage_trace(
    stage: int, stage_output: torch.Tensor, out: ReattentionOutput, enhanced: torch.Tensor, pooled: torch.Tensor
) -> StageTrace:
    """A :class:`StageTrace` from one stage's tensors (detached, on the CPU, channel means taken on the device)."""
    return StageTrace(
        stage=stage,
        stage_output=to_cpu(stage_output),
        importance=to_cpu(out.importance),
        importance_softmax=to_cpu(out.importance_softmax),
        suppression=to_cpu(out.suppression),
        suppressed_channels=to_cpu(out.suppressed_channels),
        enhanced=to_cpu(enhanced),
        enhanced_mean=to_cpu(enhanced.mean(dim=1)),
        reweighted_mean=to_cpu(out.enhanced.mean(dim=1)),
        suppressed_mean=to_cpu(out.suppressed.mean(dim=1)),
        stage_mean=to_cpu(stage_output.mean(dim=1)),
        pooled=to_cpu(pooled),
    )
