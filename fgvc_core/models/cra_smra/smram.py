"""SMRAM, the spatial multi-region attention module, with CCMP and the diversity loss ``L_div`` (training only).

For the three enhanced maps ``X_e`` (C_a channels) of stages 3, 4, 5:
1. bring stages 3 and 4 to stage 5's spatial size (``Conv_block``; **Uncertain**, option ``smram_resize``);
2. batch-normalise, then ``φ`` (a 1×1 conv C_a -> 1 per stage) and a softmax over each map's h·w positions;
3. stack to (B, 3, h, w); CCMP takes the max over the 3 maps per pixel;
4. ``h = Σ_pixels CCMP`` lies in [1, 3] (1: the maps coincide, 3: disjoint), and
   ``L_div = 1 - mean_batch(h) / 3`` (MC-Loss form; **Uncertain**: the paper's constant and normalisation are lost).

``smram_resize`` options (the paper lists "average pooling and batch normalization" among SMRAM's parts):
- ``"avgpool"`` (default): adaptive average pooling to stage 5's size; adds no weights besides BN and ``φ``;
- ``"conv"``: one 3×3 stride-2 conv + BN + ReLU per halving (a learned downsampler, PMG-style), then an adaptive
  average pool only if odd sizes left a mismatch. Costly at C_a = 1024 (≈9.4M weights per conv).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import ConvNormAct

SMRAM_RESIZE: tuple[str, ...] = ("avgpool", "conv")


def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the spatial positions of each map: (B, K, h, w) -> (B, K, h, w), each map sums to 1."""
    b, k, h, w = logits.shape
    return logits.flatten(2).softmax(dim=2).view(b, k, h, w)


def ccmp(maps: torch.Tensor) -> torch.Tensor:
    """Cross-channel max pooling: (B, K, h, w) -> (B, h, w), the largest of the K maps at each pixel."""
    return maps.amax(dim=1)


def ccmp_spread(maps: torch.Tensor) -> torch.Tensor:
    """``h = Σ_pixels CCMP(maps)`` per image, (B, K, h, w) -> (B,): 1 when the K maps coincide, K when disjoint."""
    return ccmp(maps).flatten(1).sum(dim=1)


def diversity_loss(maps: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``L_div = 1 - h / ε`` with ``h = Σ_pixels CCMP(maps)`` (:func:`ccmp_spread`) and ε = K maps (3 here).

    Args:
        maps: (B, K, h, w) spatial softmax maps (each sums to 1 over its pixels).
        reduction: ``"mean"`` over the batch (the loss), or ``"none"`` for (B,).
    """
    spread = ccmp_spread(maps)
    per_image = 1.0 - spread / maps.shape[1]
    if reduction == "none":
        return per_image
    if reduction == "mean":
        return per_image.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _downsampler(channels: int, halvings: int, mode: str) -> nn.Module:
    if mode == "conv" and halvings > 0:
        return nn.Sequential(*[ConvNormAct(channels, channels, 3, stride=2) for _ in range(halvings)])
    return nn.Identity()  # "avgpool" pools functionally in forward, to whatever size stage 5 has


class Smram(nn.Module):
    """Spatial maps of the three stages and their diversity loss.

    Args:
        channels: C_a, the channels of every enhanced map.
        strides: output strides of stages 3, 4, 5 (sets how many halvings ``"conv"`` needs).
        resize: ``"avgpool"`` or ``"conv"`` (see the module docstring).
    """

    def __init__(self, channels: int, strides: Sequence[int] = (8, 16, 32), resize: str = "avgpool") -> None:
        super().__init__()
        if resize not in SMRAM_RESIZE:
            raise ValueError(f"resize must be one of {SMRAM_RESIZE}, got {resize!r}")
        self.resize = resize
        halvings = [round(math.log2(strides[-1] / s)) for s in strides]
        self.downsample = nn.ModuleList(_downsampler(channels, n, resize) for n in halvings)
        self.norm = nn.ModuleList(nn.BatchNorm2d(channels) for _ in strides)
        self.phi = nn.ModuleList(nn.Conv2d(channels, 1, kernel_size=1) for _ in strides)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, 3, h, w) spatial softmax maps for ``features`` = the enhanced maps of stages 3, 4, 5."""
        size = features[-1].shape[-2:]
        logits = []
        for x, down, norm, phi in zip(features, self.downsample, self.norm, self.phi):
            x = down(x)
            if x.shape[-2:] != size:
                x = F.adaptive_avg_pool2d(x, size)
            logits.append(phi(norm(x)))
        return spatial_softmax(torch.cat(logits, dim=1))
