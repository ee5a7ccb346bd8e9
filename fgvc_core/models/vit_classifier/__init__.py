"""A plain timm ViT classifier (one CLS token, one head): the baseline both papers start from, and the registry's
proof that a model can be added by its own package, one spec, a recipe and its tests (docs/ARCHITECTURE.md)."""

from fgvc_core.models.vit_classifier.model import VitClassifier, build_vit_classifier
from fgvc_core.models.vit_classifier.trace import AttentionState, VitTrace

__all__ = ["AttentionState", "VitClassifier", "VitTrace", "build_vit_classifier"]
