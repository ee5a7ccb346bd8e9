"""FGVC Explorer core: data, models (RAMS-Trans, CRA-SMRA), explanations and training engine.

The public entry points are re-exported here and resolved lazily, so that ``import fgvc_core`` stays cheap
(the app and the CLI import it before they know which parts they need).
"""

from __future__ import annotations

from fgvc_core._lazy import lazy_exports
from fgvc_core.errors import CheckpointError, ConfigError, DatasetError, FGVCError, ImageError

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "load_image": "fgvc_core.data.images",
    "build_dataset": "fgvc_core.data.registry",
    "build_transform": "fgvc_core.data.transforms",
    "build_model": "fgvc_core.models.registry",
    "save_checkpoint": "fgvc_core.engine.checkpoint",
    "load_checkpoint": "fgvc_core.engine.checkpoint",
}

__all__ = ["FGVCError", "ImageError", "DatasetError", "CheckpointError", "ConfigError", "__version__", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
