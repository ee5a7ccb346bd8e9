"""What a page says about one map: its peak in image pixels, whether the peak hits a deciding part, and whether
the map is worth reading at all (its class's probability), in one frame (the panel's image).

Ground-truth boxes live in original-image pixels; a panel shows the network input (or a DPPM crop of it), so
:func:`boxes_in_frame` carries xywh boxes from the input into a crop that was resized to the full input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fgvc_core.explain.scoring import metrics
from fgvc_core.explain.scoring.agreement import top_cells

NEGLIGIBLE_PROBABILITY = 0.01  # below this a class-specific map explains a class the model all but rules out


@dataclass(frozen=True)
class PeakReadout:
    """A map's peak on its panel.

    Attributes:
        x, y: the peak (centre of the arg-max pixel after bilinear upsampling, as the pointing game scores it),
            in the panel's pixels.
        value: the map's maximum before any display scaling.
        hit: whether the peak lies in a deciding part box (tolerance 0), or None when the image has no parts there.
    """

    x: float
    y: float
    value: float
    hit: bool | None


def boxes_in_frame(boxes_xywh: Any, crop_xyxy: Any | None, frame_size: int) -> np.ndarray:
    """``(D, 4)`` xywh boxes on the network input, moved into the frame a crop of it was resized to.

    ``crop_xyxy`` is the crop on the input (None: the frame is the input itself); ``frame_size`` the side of the
    square the crop was resized to. Boxes are clipped to the frame; a box wholly outside keeps zero width or height.
    """
    b = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    if crop_xyxy is None:
        x0, y0, sx, sy = 0.0, 0.0, 1.0, 1.0
    else:
        cx0, cy0, cx1, cy1 = (float(v) for v in np.asarray(crop_xyxy, dtype=np.float64).reshape(-1)[:4])
        x0, y0 = cx0, cy0
        sx, sy = frame_size / max(cx1 - cx0, 1e-9), frame_size / max(cy1 - cy0, 1e-9)
    left = np.clip((b[:, 0] - x0) * sx, 0, frame_size)
    top = np.clip((b[:, 1] - y0) * sy, 0, frame_size)
    right = np.clip((b[:, 0] + b[:, 2] - x0) * sx, 0, frame_size)
    bottom = np.clip((b[:, 1] + b[:, 3] - y0) * sy, 0, frame_size)
    return np.stack([left, top, right - left, bottom - top], axis=1)


def visible_boxes(boxes_xywh: Any) -> np.ndarray | None:
    """The boxes with a positive area (others were cut off by a crop), or None when none is left."""
    if boxes_xywh is None:
        return None
    b = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    keep = (b[:, 2] > 0) & (b[:, 3] > 0)
    return b[keep] if keep.any() else None


def peak_readout(m: Any, frame_hw: tuple[int, int], part_boxes_xywh: Any | None = None) -> PeakReadout:
    """The peak of a 2-d map on a ``frame_hw`` panel and, given part boxes in that frame, whether it hits one."""
    arr = np.asarray(m, dtype=np.float64)
    x, y = metrics.peak_points(arr[None], frame_hw)[0]
    boxes = visible_boxes(part_boxes_xywh)
    hit = None if boxes is None else bool(metrics.pointing_game(arr[None], [boxes], image_size=frame_hw)[0])
    return PeakReadout(float(x), float(y), float(arr.max()), hit)


def is_negligible(probability: float, threshold: float = NEGLIGIBLE_PROBABILITY) -> bool:
    """Whether a class-specific map belongs to a class the model gives less than ``threshold`` (default 1 %)."""
    return float(probability) < threshold


def shared_scale(maps: dict[Any, Any]) -> tuple[float, float]:
    """``(low, high)`` over several raw maps, so they can be drawn on one colour scale (high > low)."""
    values = [np.asarray(m, dtype=np.float64) for m in maps.values()]
    low = min(float(v.min()) for v in values)
    high = max(float(v.max()) for v in values)
    return low, high if high > low else low + 1.0


def top_region_iou(a: Any, b: Any, fraction: float = 0.2) -> float:
    """IoU of the top ``fraction`` cells of two maps on the same grid (ties broken by position, first wins)."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"maps of different sizes: {np.shape(a)} and {np.shape(b)}")
    k = max(1, int(round(fraction * x.size)))
    top_x, top_y = top_cells(x, k), top_cells(y, k)
    return int((top_x & top_y).sum()) / int((top_x | top_y).sum())
