"""variant -> channel-attention class, one small factory (timm ``create_attn`` style).

Every class takes ``(channels, reduction)`` and is called as ``module(x, delta=..., omega=...)`` returning a
:class:`ReattentionOutput`, so the model has one code path for all ablation variants (paper Table 3):

=============  ===================  =====================================  =======
variant        channel attention    X_e (before Conv_layer) / X_s          SMRAM
=============  ===================  =====================================  =======
``plain``      none                 X / X; one head on stage 5, no         no
                                    Conv_layers (the paper's "ResNet50")
``base``       none                 X / X (multi-stage heads kept)         no
``cbam``       CBAM channel gate    I ⊗ X / I ⊗ X                          no
``cbam_full``  CBAM channel +       M_s ⊗ (I ⊗ X) / the same               no
               spatial gate
``cram``       CRAM                 I ⊗ X / S ⊗ X (or S ⊗ X_e)             no
``cram_smram`` CRAM                 I ⊗ X / S ⊗ X (or S ⊗ X_e)             yes
=============  ===================  =====================================  =======

``X_s = S ⊗ X`` or ``S ⊗ X_e`` is the build option ``suppress_from`` (``"stage"``, default, or ``"enhanced"``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fgvc_core.errors import ConfigError
from fgvc_core.models.cra_smra.cbam import CbamChannelGate, CbamFull
from fgvc_core.models.cra_smra.cram import Cram
from fgvc_core.models.cra_smra.trace import ReattentionOutput


class NoReattention(nn.Module):
    """The ``base`` variant: multi-stage heads on the plain backbone (``X_e = X_s = X``)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, delta: float | None = None, omega: float | None = None) -> ReattentionOutput:
        return ReattentionOutput(enhanced=x, suppressed=x)


_ATTENTION: dict[str, type[nn.Module]] = {
    "none": NoReattention,
    "cbam": CbamChannelGate,
    "cbam_full": CbamFull,
    "cram": Cram,
}

# variant -> (channel attention, with SMRAM); ``plain`` also drops the multi-stage heads (see the model)
_VARIANTS: dict[str, tuple[str, bool]] = {
    "plain": ("none", False),
    "base": ("none", False),
    "cbam": ("cbam", False),
    "cbam_full": ("cbam_full", False),
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


def create_channel_attention(
    variant: str, channels: int, reduction: int = 16, suppress_from: str = "stage"
) -> nn.Module:
    """The channel-attention module that ``variant`` puts after a stage with ``channels`` channels."""
    kind, _ = variant_parts(variant)
    if kind == "cram":
        return Cram(channels, reduction, suppress_from=suppress_from)
    return _ATTENTION[kind](channels, reduction)
