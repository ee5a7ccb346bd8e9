"""CRA-SMRA: channel re-attention (CRAM) and spatial multi-region attention (SMRAM) on a multi-stage CNN.

See ``docs/methods/cra_smra.md`` for where each equation of the paper is computed and tested.
"""

from fgvc_core.models.cra_smra.backbones import BACKBONES
from fgvc_core.models.cra_smra.channel_attention import VARIANTS
from fgvc_core.models.cra_smra.model import CRAM_STAGES, HEAD_NAMES, TAP_POINTS, CraSmra, build_cra_smra
from fgvc_core.models.cra_smra.smram import SMRAM_RESIZE
from fgvc_core.models.cra_smra.trace import CraSmraCache, CraSmraTrace, ReattentionOutput, StageTrace

__all__ = [
    "BACKBONES",
    "CRAM_STAGES",
    "HEAD_NAMES",
    "SMRAM_RESIZE",
    "TAP_POINTS",
    "VARIANTS",
    "CraSmra",
    "CraSmraCache",
    "CraSmraTrace",
    "ReattentionOutput",
    "StageTrace",
    "build_cra_smra",
]
