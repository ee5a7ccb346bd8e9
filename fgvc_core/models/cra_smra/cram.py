"""CRAM, the channel re-attention module (docs/methods/cra_smra.md; paper Eqs. 1-6).

For a stage output ``X`` (B, C, H, W):
- ``I = σ(MLP(AvgPool X) + MLP(MaxPool X))`` (CBAM's channel gate, :func:`channel_importance`);
- ``X_e = I ⊗ X``, the channel-enhanced map (the model's ``Conv_layer`` then brings it to C_a channels);
- ``I* = softmax(I)`` over channels;
- ``S_c = ω`` where ``I*_c ≥ δ · max(I*)``, else 1 (**Uncertain** reading of Eq. 5, docs/methods/cra_smra.md);
- ``X_s = S ⊗ X``, the channel-suppressed map fed to the next stage, in training *and* at test.
  **Uncertain:** the paper's Eq. 6 image is lost; its text says S is used "to obtain X_s" right after X_e.
  ``suppress_from="enhanced"`` offers ``X_s = S ⊗ X_e`` (= S ⊗ I ⊗ X) as the named alternative.

With I in (0, 1), I*_c / I*_max = exp(I_c - I_max) > e^-1 ≈ 0.368, so every δ ≤ 1/e suppresses *every* channel
(S = ω everywhere, X_s = ω·X): the useful δ range is (1/e, 1]. `DEGENERATE_DELTA` names that bound.

δ and ω are call arguments, not module state, so a caller can slide them without touching a shared model.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from fgvc_core.models.cra_smra.cbam import channel_importance, make_channel_mlp
from fgvc_core.models.cra_smra.trace import ReattentionOutput

DEFAULT_DELTA = 0.9
DEFAULT_OMEGA = 0.5
DEGENERATE_DELTA = math.exp(-1.0)  # δ at or below this suppresses every channel (I in (0, 1))
SUPPRESS_FROM: tuple[str, ...] = ("stage", "enhanced")


def suppressed_channels(importance_softmax: torch.Tensor, delta: float) -> torch.Tensor:
    """Bool (B, C): the channels CRAM suppresses, ``I*_c ≥ δ · max_c I*``.

    softmax is monotone, so this equals ``I_c ≥ max I + ln δ``; δ = 1 keeps only the top channel(s).
    """
    return importance_softmax >= delta * importance_softmax.amax(dim=1, keepdim=True)


def suppression_mask(importance_softmax: torch.Tensor, delta: float, omega: float) -> torch.Tensor:
    """``S`` (B, C): ``ω`` on the suppressed channels, 1 on the others."""
    return _mask(suppressed_channels(importance_softmax, delta), omega, importance_softmax)


def _mask(selected: torch.Tensor, omega: float, like: torch.Tensor) -> torch.Tensor:
    return torch.where(selected, torch.full_like(like, omega), torch.ones_like(like))


class Cram(nn.Module):
    """Channel re-attention: enhance by ``I``, then suppress the most important channels by ``ω`` for the next stage.

    Args:
        channels: C of the stage output.
        reduction: the MLP's reduction ratio r (hidden width round(C / r), at least 1).
        suppress_from: ``"stage"`` (``X_s = S ⊗ X``, default) or ``"enhanced"`` (``X_s = S ⊗ X_e``).
    """

    def __init__(self, channels: int, reduction: int = 16, suppress_from: str = "stage") -> None:
        super().__init__()
        self.mlp = make_channel_mlp(channels, reduction)
        self.suppress_from = suppress_from

    def forward(self, x: torch.Tensor, delta: float = DEFAULT_DELTA, omega: float = DEFAULT_OMEGA) -> ReattentionOutput:
        importance = channel_importance(self.mlp, x)
        # S is a step function of I: gradients reach the MLP through X_e only, as in the paper's figure.
        importance_softmax = importance.softmax(dim=1)
        selected = suppressed_channels(importance_softmax, delta)
        suppression = _mask(selected, omega, importance)
        enhanced = x * importance[:, :, None, None]
        source = enhanced if self.suppress_from == "enhanced" else x
        return ReattentionOutput(
            enhanced=enhanced,
            suppressed=source * suppression[:, :, None, None],
            importance=importance,
            importance_softmax=importance_softmax,
            suppression=suppression,
            suppressed_channels=selected,
        )
