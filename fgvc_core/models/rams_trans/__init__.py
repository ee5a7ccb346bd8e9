"""RAMS-Trans: a timm ViT that zooms into its own attention (DPPM), with one CLS token per scale."""

from fgvc_core.models.rams_trans.model import RamsTrans, build_rams_trans
from fgvc_core.models.rams_trans.trace import RamsTransTrace, Scale1State, ScaleTrace

__all__ = ["RamsTrans", "RamsTransTrace", "Scale1State", "ScaleTrace", "build_rams_trans"]
