"""Explanations: attention rollout, per-stage CAMs (pytorch-grad-cam), overlays and explanation metrics.

Public functions live in the submodules listed in ``_SUBMODULES``; they are looked up lazily so that importing
``fgvc_core.explain`` does not import pytorch-grad-cam, timm or OpenCV until a function is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("rollout", "cam", "overlay", "metrics", "perturbation", "vit_cam", "occlusion", "figures", "plots")


def __getattr__(name: str) -> Any:
    for sub in _SUBMODULES:
        try:
            module = importlib.import_module(f"fgvc_core.explain.{sub}")
        except ModuleNotFoundError as exc:
            if exc.name == f"fgvc_core.explain.{sub}":
                continue  # that submodule does not exist (yet)
            raise
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module 'fgvc_core.explain' has no attribute {name!r}")
