"""Images the pages show, composed from the core's overlay helpers (no model maths: traces in, pixels out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fgvc_core.explain.rendering.figure_utils import batch_row, display_image
from fgvc_core.explain.rendering.overlay import draw_boxes, draw_mask_outline, grid_to_image_mask, overlay_heatmap

DIM_OUTSIDE = 0.35  # brightness kept outside the DPPM mask, as in the exported DPPM figure
MASK_COLOR = (255, 255, 0)


def scale_input(trace: Any, scale: int, preprocess: Mapping[str, Any]) -> np.ndarray:
    """What scale ``scale`` of a RAMS-Trans trace saw (its crop), de-normalised to ``uint8 (H, W, 3)``."""
    return display_image(trace.scales[scale].crop[0], preprocess)


def _line(rgb: np.ndarray) -> int:
    return max(1, rgb.shape[0] // 112)


def dppm_views(trace: Any, scale: int, preprocess: Mapping[str, Any], alpha: float = 0.5) -> dict[str, np.ndarray]:
    """The four DPPM steps of one scale as images: rollout overlay, thresholded mask, kept component, box."""
    sc = trace.scales[scale]
    rgb = scale_input(trace, scale, preprocess)
    mask = batch_row(sc.mask, 0, 2) > 0.5
    component = batch_row(sc.component, 0, 2) > 0.5
    inside = grid_to_image_mask(mask, rgb.shape[:2])
    dimmed = np.round(rgb * np.where(inside, 1.0, DIM_OUTSIDE)[:, :, None]).astype(np.uint8)
    kept = grid_to_image_mask(component, rgb.shape[:2])
    dimmed_kept = np.round(rgb * np.where(kept, 1.0, DIM_OUTSIDE)[:, :, None]).astype(np.uint8)
    box = batch_row(sc.proposal_box, 0, 1)
    return {
        "rollout": overlay_heatmap(rgb, batch_row(sc.rollout, 0, 2), alpha=alpha),
        "mask": draw_mask_outline(dimmed, mask, color=MASK_COLOR, width=_line(rgb)),
        "component": draw_mask_outline(dimmed_kept, component, color=MASK_COLOR, width=_line(rgb)),
        "box": draw_boxes(rgb, box[None], width=max(2, _line(rgb) + 1)),
    }


def original_with_box(image: Any, box: Any) -> np.ndarray:
    """The uploaded image with one ``xyxy`` box (in its own pixels)."""
    rgb = display_image(image)
    return draw_boxes(rgb, np.asarray(box, dtype=np.float64).reshape(1, 4), width=max(2, min(rgb.shape[:2]) // 100))


def box_text(box: Any) -> str:
    """``"x0, y0 → x1, y1"`` in whole pixels."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1)[:4])
    return f"({x0:.0f}, {y0:.0f}) → ({x1:.0f}, {y1:.0f})"
