"""A tiny name -> builder registry (timm's ``@register_model`` idea, without import-time side effects).

Builders are referenced as ``"module:function"`` strings and imported on first use, so that building a
CRA-SMRA model never imports timm's ViT code and vice versa.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch.nn as nn

from fgvc_core.errors import ConfigError

_BUILDERS: dict[str, str] = {
    "cra_smra": "fgvc_core.models.cra_smra.model:build_cra_smra",
    "rams_trans": "fgvc_core.models.rams_trans.model:build_rams_trans",
}


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_BUILDERS)


def _resolve(name: str) -> Callable[..., nn.Module]:
    try:
        target = _BUILDERS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(list_models())}") from None
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


def build_model(name: str, num_classes: int, **options: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: ``"rams_trans"`` or ``"cra_smra"``.
        num_classes: number of output classes (>= 2).
        **options: model hyperparameters (see docs/methods/ and each builder's docstring); unknown options raise
            :class:`~fgvc_core.errors.ConfigError`.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return _resolve(name)(num_classes=num_classes, **options)
