"""Data layer: the image door (`load_image`), dataset loaders (`build_dataset`) and transforms.

Names are resolved lazily, like ``fgvc_core`` itself: importing ``fgvc_core.data.images`` must not pull in
torchvision and scipy through this package.
"""

from __future__ import annotations

from fgvc_core._lazy import lazy_exports

_LAZY = {
    "load_image": "fgvc_core.data.images",
    "MAX_PIXELS": "fgvc_core.data.images",
    "MIN_SIDE": "fgvc_core.data.images",
    "MAX_ASPECT": "fgvc_core.data.images",
    "build_dataset": "fgvc_core.data.registry",
    "DATASETS": "fgvc_core.data.registry",
    "ImageListDataset": "fgvc_core.data._base",
    "CUBDataset": "fgvc_core.data.cub",
    "CUBAnnotation": "fgvc_core.data.cub",
    "StanfordCarsDataset": "fgvc_core.data.cars",
    "AircraftDataset": "fgvc_core.data.aircraft",
    "StanfordDogsDataset": "fgvc_core.data.dogs",
    "FolderDataset": "fgvc_core.data.folder",
    "PRESETS": "fgvc_core.data.transforms",
    "IMAGENET_MEAN": "fgvc_core.data.transforms",
    "IMAGENET_STD": "fgvc_core.data.transforms",
    "preprocess_config": "fgvc_core.data.transforms",
    "resolve_preprocess": "fgvc_core.data.transforms",
    "build_transform": "fgvc_core.data.transforms",
    "denormalize": "fgvc_core.data.transforms",
    "input_box_to_original": "fgvc_core.data.transforms",
    "original_box_to_input": "fgvc_core.data.transforms",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
