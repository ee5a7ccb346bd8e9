"""CBAM's channel gate, composed from timm's ``ChannelAttn``: the importance ``I`` both CRAM and CBAM start from.

timm's ``ChannelAttn.forward`` returns ``x * I`` only; CRAM also needs ``I`` itself (for ``I*`` and ``S``), so
:func:`channel_importance` evaluates the same layers (``fc1``, ``act``, ``fc2``, ``gate``) and stops before the
product. Two ablation variants stand in CRAM's place (paper Table 3, "+CBAM instead of CRAM"):
- ``cbam``: CBAM's channel gate alone, ``X_e = X_s = I ⊗ X`` (one channel module swapped for another);
- ``cbam_full``: the whole CBAM (Woo et al. 2018), the channel gate then timm's 7×7 spatial gate,
  ``X_e = X_s = M_s(I ⊗ X) ⊗ (I ⊗ X)``: what the paper's table row names.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers.cbam import ChannelAttn, SpatialAttn

from fgvc_core.models.cra_smra.trace import ReattentionOutput


def make_channel_mlp(channels: int, reduction: int = 16) -> ChannelAttn:
    """The shared MLP ``FC2(ReLU(FC1(·)))`` with reduction ``r`` and a sigmoid gate (timm's CBAM layers).

    The 1×1 convs carry biases, as in the CBAM reference code (timm defaults to none).
    """
    return ChannelAttn(channels, rd_ratio=1.0 / reduction, rd_divisor=1, mlp_bias=True)


def channel_importance(mlp: ChannelAttn, x: torch.Tensor) -> torch.Tensor:
    """``I = σ(MLP(AvgPool(X)) + MLP(MaxPool(X)))`` (B, C) for ``x`` (B, C, H, W)."""
    avg = mlp.fc2(mlp.act(mlp.fc1(x.mean((2, 3), keepdim=True))))
    peak = mlp.fc2(mlp.act(mlp.fc1(x.amax((2, 3), keepdim=True))))
    return mlp.gate(avg + peak).flatten(1)


class CbamChannelGate(nn.Module):
    """The ``cbam`` variant: CBAM's channel gate in CRAM's place, with no suppression (``X_s = X_e = I ⊗ X``)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.mlp = make_channel_mlp(channels, reduction)

    def forward(self, x: torch.Tensor, delta: float | None = None, omega: float | None = None) -> ReattentionOutput:
        """Gate ``x``; ``delta``/``omega`` are accepted for a uniform call and ignored."""
        importance = channel_importance(self.mlp, x)
        gated = x * importance[:, :, None, None]
        return ReattentionOutput(enhanced=gated, suppressed=gated, importance=importance)


class CbamFull(nn.Module):
    """The ``cbam_full`` variant: CBAM's channel gate, then its spatial gate (timm's ``SpatialAttn``).

    No suppression: ``X_s = X_e``, as in the ``cbam`` variant.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.mlp = make_channel_mlp(channels, reduction)
        self.spatial = SpatialAttn(kernel_size=7)

    def forward(self, x: torch.Tensor, delta: float | None = None, omega: float | None = None) -> ReattentionOutput:
        """Gate ``x`` by channel then by position; ``delta``/``omega`` are accepted for a uniform call and ignored."""
        importance = channel_importance(self.mlp, x)
        gated = self.spatial(x * importance[:, :, None, None])
        return ReattentionOutput(enhanced=gated, suppressed=gated, importance=importance)
