"""Map inputs shared by the scoring modules: one check of an explanation map batch, one way to bring it to a frame.

:mod:`fgvc_core.explain.scoring.metrics` (no model) and :mod:`fgvc_core.explain.scoring.perturbation` (calls a
model) both read maps through these, so neither imports the other's private helpers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fgvc_core.errors import ConfigError

ArrayLike = np.ndarray | torch.Tensor | Sequence


def as_maps(maps: ArrayLike) -> torch.Tensor:
    """``(B, h, w)`` float64 CPU maps from ``(B, h, w)`` or ``(h, w)`` input; empty or non-finite maps raise."""
    t = maps.detach().cpu() if isinstance(maps, torch.Tensor) else torch.as_tensor(np.array(maps))
    t = t.to(torch.float64)
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] == 0 or t.shape[1] == 0 or t.shape[2] == 0:
        raise ConfigError(f"maps must be (B, h, w) or (h, w), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ConfigError("maps contain NaN or infinite values")
    return t


def to_frame(maps: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """``(B, h, w)`` maps resampled to ``size``: ``"bilinear"`` (``align_corners=False``) or the pixel-centre rule."""
    if tuple(maps.shape[1:]) == size:
        return maps
    if mode == "bilinear":
        return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return F.interpolate(maps[:, None], size=size, mode="nearest-exact")[:, 0]  # pixel-centre rule
