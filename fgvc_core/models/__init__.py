"""Model registry and the two FGVC models. ``build_model`` is the only entry point callers need."""

from fgvc_core.models.registry import build_model, list_models

__all__ = ["build_model", "list_models"]
