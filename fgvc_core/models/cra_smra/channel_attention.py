"""variant -> channel-attention class, one small factory (timm ``create_attn`` style).

Every class takes ``(channels, reduction)`` and is called as ``module(x, delta=..., omega=...)`` returning a
:class:`ReattentionOutput`, so the model has one code path for all ablation variants (paper Table 3):

=============  ===================  =====================================  =======
variant        channel attention    X_e (before Conv_layer) / X_s          SMRAM
=============  ===================  =====================================  =======
``base``       none                 X / X                                  no
``cbam``       CBAM channel gate    I ⊗ X / I ⊗ X                          no
``cram``       CRAM                 I ⊗ X / S ⊗ X                          no
``cram_smram`` CRAM                 I ⊗ X / S ⊗ X                          yes
=============  ===================  =====================================  =======
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fgvc_core.errors import ConfigError
from fgvc_core.models.cra_smra.cbam import CbamChannelGate
from fgvc_core.models.cra_smra.cram import Cram
from fgvc_core.models.cra_smra.trace import ReattentionOutput


class NoReattention(nn.Module):
    """The ``base`` variant: multi-stage heads on the plain backbone (``X_e = X_s = X``)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, delta: float | None = None, omega: float | None = None) -> ReattentionOutput:
        return ReattentionOutput(enhanced=x, suppressed=x)


_ATTENTION: dict[str, type[nn.Module]] = {"none": NoReattention, "cbam": CbamChannelGate, "cram": Cram}

# variant -> (channel attention, with SMRAM)
_VARIANTS: dict[str, tuple[str, bool]] = {
    "base": ("none", False),
    "cbam": ("cbam", False),
    "cram": ("cram", False),
    "cram_smram": ("cram", True),
}
VARIANTS: tuple[str, ...] = tuple(_VARIANTS)


def variant_parts(variant: str) -> tuple[str, bool]:
    """``(attention kind, uses SMRAM)`` of a variant.

    Raises:
        ConfigError: unknown variant.
    """
    try:
        return _VARIANTS[variant]
    except KeyError:
        raise ConfigError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}") from None


def create_channel_attention(variant: str, channels: int, reduction: int = 16) -> nn.Module:
    """The channel-attention module that ``variant`` puts after a stage with ``channels`` channels."""
    kind, _ = variant_parts(variant)
    return _ATTENTION[kind](channels, reduction)
