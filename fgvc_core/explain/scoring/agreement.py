"""How much two explanation maps of one image agree: overlap of their top regions and rank correlation.

Used to compare RAMS-Trans's rollout with CRA-SMRA's stage-5 Grad-CAM. The maps live on different grids (14×14
patches, 7×7 cells, …), so both are resampled bilinearly onto one grid over the same frame first. That frame is
each model's network input: the comparison is only meaningful when both checkpoints crop the image the same way
(the caller checks and says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from fgvc_core.errors import ConfigError

COMMON_GRID = (28, 28)


@dataclass(frozen=True)
class Agreement:
    """``iou``: IoU of the two maps' top-``fraction`` regions; ``spearman``: rank correlation of all cells."""

    iou: float
    spearman: float
    fraction: float
    grid: tuple[int, int]


def resample(m: np.ndarray, grid: tuple[int, int] = COMMON_GRID) -> np.ndarray:
    """A 2-d map resized bilinearly (align_corners=False: cell centres, as the overlays draw them) to ``grid``."""
    a = np.asarray(m, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ConfigError(f"an explanation map must be a non-empty 2-d array, got shape {a.shape}")
    t = torch.from_numpy(a)[None, None]
    return F.interpolate(t, size=grid, mode="bilinear", align_corners=False)[0, 0].numpy()


def top_region(m: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``ceil(fraction · cells)`` highest cells (ties broken by position, first wins)."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must lie in (0, 1], got {fraction}")
    return top_cells(m, max(1, math.ceil(fraction * np.size(m) - 1e-9)))


def top_cells(m: np.ndarray, count: int) -> np.ndarray:
    """Boolean mask of the ``count`` highest cells of ``m`` (ties broken by position, first wins)."""
    flat = np.asarray(m, dtype=np.float64).reshape(-1)
    mask = np.zeros(flat.size, dtype=bool)
    mask[np.argsort(-flat, kind="stable")[:count]] = True
    return mask.reshape(np.shape(m))


def _constant(values: np.ndarray) -> bool:
    return float(np.ptp(values)) <= 1e-9 * max(1.0, float(np.abs(values).max()))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two equally shaped maps (average ranks for ties); NaN if one is constant."""
    fa, fb = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if _constant(fa) or _constant(fb):  # resampling leaves float noise on a flat map: its ranks would be noise
        return float("nan")
    ra, rb = rankdata(fa), rankdata(fb)
    return float(np.corrcoef(ra, rb)[0, 1])


def map_agreement(
    a: np.ndarray, b: np.ndarray, fraction: float = 0.2, grid: tuple[int, int] = COMMON_GRID
) -> Agreement:
    """Agreement of maps ``a`` and ``b`` (any grids) after resampling both onto ``grid``."""
    ra, rb = resample(a, grid), resample(b, grid)
    ta, tb = top_region(ra, fraction), top_region(rb, fraction)
    union = int((ta | tb).sum())
    iou = float((ta & tb).sum() / union) if union else float("nan")
    return Agreement(iou, spearman(ra, rb), fraction, grid)
