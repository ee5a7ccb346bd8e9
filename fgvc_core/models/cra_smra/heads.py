"""What turns each stage's channel-enhanced map into logits (PMG-style, as docs/methods/cra_smra.md reads the paper).

- ``Conv_layer`` (:func:`conv_block`): 1×1 conv to ``conv_mid_channels`` + BN + ReLU, then 3×3 conv to C_a + BN +
  ReLU (**Uncertain**: PMG's block; C_a = ``conv_channels`` is the same for every stage).
- Global max pooling of the C_a-channel map (:func:`global_max_pool`).
- :class:`Classifier`: BN -> Linear(in, hidden) -> BN -> ELU -> Linear(hidden, K), one per stage and one for the
  concatenation of the three pooled vectors (3·C_a).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import ConvNormAct


def conv_block(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    """The ``Conv_layer`` that brings a stage's ``I ⊗ X`` to C_a channels."""
    return nn.Sequential(
        ConvNormAct(in_channels, mid_channels, kernel_size=1),
        ConvNormAct(mid_channels, out_channels, kernel_size=3),
    )


def global_max_pool(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C)."""
    return x.amax(dim=(2, 3))


class Classifier(nn.Sequential):
    """PMG's classifier: BN -> Linear -> BN -> ELU -> Linear."""

    def __init__(self, in_features: int, hidden: int, num_classes: int) -> None:
        super().__init__(
            nn.BatchNorm1d(in_features),
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ELU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
