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

The second option, ``patch_embed="resnet_tiny"``, is the hybrid ViT of Dosovitskiy et al. (ICLR 2021, §3.1): the
tokens are the stride-16 feature map of a small ResNet (the CRA-SMRA demo backbone's stem and layers 1-3) through
a 1x1 projection. Measured on the benchmark: with the conv stem, the from-scratch demo ViT stalled at 32% test
top-1 after 1750 steps (it learnt the crest colour, not the wing pattern or tail), while the same ResNet layers
reach 94% from one linear head in 750 steps. A hybrid can start from those layers (``pretrained:`` a CRA-SMRA
checkpoint), the CPU stand-in for the paper's ImageNet-21k pre-training. Its BatchNorms are frozen (fixed
statistics and affine), for the same mode-independence as above.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn
from timm.layers import PatchEmbed, freeze_batch_norm_2d

from fgvc_core.errors import CheckpointError, ConfigError
from fgvc_core.models.weights import LoadReport, load_matching


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


class ResNetTinyPatchEmbed(PatchEmbed):
    """Hybrid embedding: ``proj`` = resnet_tiny's stem + layers 1-3 (stride 16, 128 channels, frozen BN) + 1x1 conv."""

    STAGES = ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if tuple(self.patch_size) != (16, 16) or self.proj.in_channels != 3:
            raise ConfigError(
                f"patch_embed='resnet_tiny' needs 16x16 patches of RGB images, got {self.patch_size} and "
                f"{self.proj.in_channels} channels"
            )
        from fgvc_core.models.cra_smra.backbones import TINY_CHANNELS, resnet_tiny

        net = resnet_tiny()
        backbone = freeze_batch_norm_2d(nn.Sequential(OrderedDict((name, getattr(net, name)) for name in self.STAGES)))
        self.proj = nn.Sequential(
            OrderedDict(backbone=backbone, proj=nn.Conv2d(TINY_CHANNELS[2], self.proj.out_channels, 1))
        )

    def load_backbone_state(self, state: dict[str, torch.Tensor], source: str) -> LoadReport:
        """Copy a CRA-SMRA (``backbone.``-prefixed) or plain resnet_tiny state dict into stem + layers 1-3."""
        prefix = "backbone." if any(key.startswith("backbone.") for key in state) else ""
        wanted = {
            key[len(prefix) :]: value
            for key, value in state.items()
            if key.startswith(prefix) and key[len(prefix) :].split(".")[0] in self.STAGES
        }
        if not wanted:
            raise CheckpointError(f"{source} holds no resnet_tiny stem/layer1-3 weights for the hybrid embedding")
        wanted = {key: value for key, value in wanted.items() if not key.endswith("num_batches_tracked")}
        report = load_matching(self.proj.backbone, wanted, source=source)
        if report.missing:
            raise CheckpointError(f"{source} lacks {len(report.missing)} hybrid-stem tensors, e.g. {report.missing[0]}")
        return report


PATCH_EMBEDS = {"linear": None, "conv_stem": ConvStemPatchEmbed, "resnet_tiny": ResNetTinyPatchEmbed}
