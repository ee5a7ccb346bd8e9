"""FGVC Explorer core: data, models (RAMS-Trans, CRA-SMRA), explanations and training engine.

The public entry points are re-exported here and resolved lazily, so that ``import fgvc_core`` stays cheap
(the app and the CLI import it before they know which parts they need).
"""

from __future__ import annotations

import importlib
from typing import Any

from fgvc_core.errors import CheckpointError, ConfigError, DatasetError, FGVCError, ImageError

__version__ = "0.1.0"

# public name -> "module:attribute"
_LAZY = {
    "load_image": "fgvc_core.data.images:load_image",
    "build_dataset": "fgvc_core.data.registry:build_dataset",
    "build_transform": "fgvc_core.data.transforms:build_transform",
    "build_model": "fgvc_core.models.registry:build_model",
    "save_checkpoint": "fgvc_core.engine.checkpoint:save_checkpoint",
    "load_checkpoint": "fgvc_core.engine.checkpoint:load_checkpoint",
}

__all__ = ["FGVCError", "ImageError", "DatasetError", "CheckpointError", "ConfigError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'fgvc_core' has no attribute {name!r}")
    module_name, attr = target.split(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
