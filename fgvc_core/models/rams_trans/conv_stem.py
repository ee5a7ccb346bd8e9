"""A convolutional patch embedding for small ViTs trained from scratch (the demo model).

A plain ViT embeds each 16x16 patch with one linear map. Trained from scratch on the generated benchmark, where
the class lives only in small local patterns, a 4-block ViT never leaves chance level within a CPU budget
(measured: 16k images, test top-1 8.3% = chance, outputs collapsed to one class). Xiao et al., "Early
Convolutions Help Transformers See Better" (NeurIPS 2021), replace that linear map by a few stride-2 3x3 convs;
the token grid, the position embedding and every block stay exactly as in timm, so the DPPM and the rollout are
unchanged. It is an option (``patch_embed="conv_stem"``), off by default: the paper recipes use timm's linear
embedding and its pretrained weights.

GroupNorm(1, c) instead of BatchNorm keeps the stem independent of train/eval mode, so a trace of a shared model
never depends on, or changes, its mode.
"""

from __future__ import annotations

import math

import torch.nn as nn
from timm.layers import PatchEmbed

from fgvc_core.errors import ConfigError


class ConvStemPatchEmbed(PatchEmbed):
    """timm's ``PatchEmbed`` with ``proj`` = log2(patch) stride-2 3x3 convs (+GroupNorm, ReLU), then a 1x1 conv."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        ph, pw = self.patch_size
        if ph != pw or ph < 2 or 2 ** round(math.log2(ph)) != ph:
            raise ConfigError(f"patch_embed='conv_stem' needs a square power-of-two patch size, got {ph}x{pw}")
        embed_dim = self.proj.out_channels
        in_chans = self.proj.in_channels
        steps = int(math.log2(ph))
        widths = [max(8, embed_dim // 2 ** (steps - i)) for i in range(1, steps + 1)]
        layers: list[nn.Module] = []
        for width in widths:
            layers += [
                nn.Conv2d(in_chans, width, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(1, width),
                nn.ReLU(),
            ]
            in_chans = width
        layers.append(nn.Conv2d(in_chans, embed_dim, 1))
        self.proj = nn.Sequential(*layers)


PATCH_EMBEDS = {"linear": None, "conv_stem": ConvStemPatchEmbed}
