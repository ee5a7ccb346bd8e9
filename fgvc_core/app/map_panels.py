"""One map panel as every page draws it: the overlay, the ground-truth object and part boxes when asked, and a
caption with the peak in the panel's pixels, the explained class's probability and whether the peak hits a part.

The numbers come from :mod:`fgvc_core.explain.scoring.map_readout`; this module only draws and words them.
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from fgvc_core.app.images import ImageChoice
from fgvc_core.explain.rendering.figure_utils import format_prob
from fgvc_core.explain.rendering.overlay import colorize, draw_boxes, overlay_heatmap, resize_map, to_rgb_uint8
from fgvc_core.explain.scoring import map_readout, metrics

PART_COLOR = (0, 255, 0)
OBJECT_COLOR = (0, 160, 255)


@dataclass(frozen=True)
class GroundTruthFrame:
    """The image's ground truth on one panel (xywh in the panel's pixels); None where the image has none."""

    object_box: np.ndarray | None
    part_boxes: np.ndarray | None


def ground_truth_frame(
    image: ImageChoice, preprocess: dict, crop_xyxy: Any | None = None, frame_size: int | None = None
) -> GroundTruthFrame:
    """The object box and deciding part boxes of ``image`` on the network input, or on a DPPM crop of it."""
    size = int(frame_size or preprocess["img_size"])

    def carry(boxes: Any) -> np.ndarray | None:
        if boxes is None or len(boxes) == 0:
            return None
        on_input = metrics.part_boxes_to_input(boxes, image.image.size, preprocess)
        return map_readout.visible_boxes(map_readout.boxes_in_frame(on_input, crop_xyxy, size))

    obj = None if image.object_box is None else np.asarray(image.object_box, dtype=np.float64).reshape(1, 4)
    return GroundTruthFrame(carry(obj), carry(image.part_boxes))


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def draw_ground_truth(rgb: np.ndarray, truth: GroundTruthFrame) -> np.ndarray:
    """The object box (blue) and the deciding parts (green) on a copy of ``rgb``."""
    out = rgb
    if truth.object_box is not None:
        out = draw_boxes(out, xywh_to_xyxy(truth.object_box), colors=[OBJECT_COLOR])
    if truth.part_boxes is not None:
        out = draw_boxes(out, xywh_to_xyxy(truth.part_boxes), colors=[PART_COLOR] * len(truth.part_boxes))
    return out


def fixed_scale_overlay(rgb: Any, m: Any, low: float, high: float, alpha: float = 0.5) -> np.ndarray:
    """Like ``overlay_heatmap`` but on the colour scale ``[low, high]`` shared by several maps (no min-max)."""
    base = to_rgb_uint8(rgb)
    scaled = np.clip((resize_map(m, base.shape[:2]) - low) / max(high - low, 1e-12), 0.0, 1.0)
    blend = (1 - alpha) * base.astype(np.float64) + alpha * colorize(scaled).astype(np.float64)
    return np.clip(np.round(blend), 0, 255).astype(np.uint8)


# Encoded tiles by the content they draw (see ``overlay_jpeg``); a few pages' worth of channel tiles.
_TILE_CACHE: OrderedDict[bytes, bytes] = OrderedDict()
_TILE_CACHE_SIZE = 256


def overlay_jpeg(rgb: np.ndarray, m: Any, low: float, high: float, alpha: float = 0.5) -> bytes:
    """``fixed_scale_overlay`` as JPEG bytes, memoised on the exact pixels and map it draws.

    A CRAM δ step redraws every channel tile, but many are unchanged (stage 3's maps do not depend on δ): a hit
    skips the resize, colouring and encoding, and the same bytes give Streamlit the same media URL, so the browser
    does not fetch the tile again.
    """
    from PIL import Image

    base = np.ascontiguousarray(to_rgb_uint8(rgb))
    values = np.ascontiguousarray(np.asarray(m.detach().cpu() if hasattr(m, "detach") else m, dtype=np.float64))
    digest = hashlib.blake2b(digest_size=20)
    for part in (base.shape, values.shape, (float(low), float(high), float(alpha))):
        digest.update(repr(part).encode())
    digest.update(base.tobytes())
    digest.update(values.tobytes())
    key = digest.digest()
    if key in _TILE_CACHE:
        _TILE_CACHE.move_to_end(key)
        return _TILE_CACHE[key]
    buffer = io.BytesIO()  # 4:4:4 chroma: the colour map's hue steps blur under JPEG's default 4:2:0
    Image.fromarray(fixed_scale_overlay(base, values, low, high, alpha=alpha)).save(
        buffer, format="JPEG", quality=95, subsampling=0
    )
    _TILE_CACHE[key] = buffer.getvalue()
    if len(_TILE_CACHE) > _TILE_CACHE_SIZE:
        _TILE_CACHE.popitem(last=False)
    return _TILE_CACHE[key]


def peak_words(readout: map_readout.PeakReadout) -> str:
    """``"peak 0.930 at pixel (x 120, y 56)"``: the arg-max pixel of the panel (one unit on every page)."""
    return f"peak {readout.value:.3f} at pixel (x {int(readout.x)}, y {int(readout.y)})"


def hit_words(hit: bool | None) -> str:
    if hit is None:
        return ""
    return " · peak hits a deciding part" if hit else " · peak misses every deciding part"


def probability_words(probability: float | None, class_name: str | None = None) -> str:
    """``" · p(Red) 12.3%"``, flagged when the class is all but ruled out (its map is stretched noise)."""
    if probability is None:
        return ""
    name = f"p({class_name})" if class_name else "p(target)"
    text = f" · {name} {format_prob(probability)}"
    if map_readout.is_negligible(probability):
        text += " · the model gives this class almost no probability: the map is stretched from a near-zero signal"
    return text


def map_panel(
    rgb: np.ndarray,
    m: Any,
    label: str,
    image: ImageChoice,
    preprocess: dict,
    *,
    show_parts: bool = False,
    opacity: float = 0.5,
    crop_xyxy: Any | None = None,
    probability: float | None = None,
    class_name: str | None = None,
    scale: tuple[float, float] | None = None,
) -> tuple[np.ndarray, str]:
    """The overlay of ``m`` on ``rgb`` (the panel) and its caption ``"<label> · peak … · p(…) … · hit/miss"``.

    ``scale``: colour ``m`` on this fixed ``(low, high)`` range, shared with other panels, instead of its own min-max.
    """
    shown = overlay_heatmap(rgb, m, alpha=opacity) if scale is None else fixed_scale_overlay(rgb, m, *scale, opacity)
    truth = ground_truth_frame(image, preprocess, crop_xyxy, rgb.shape[0]) if show_parts else None
    parts = truth.part_boxes if truth is not None else None
    readout = map_readout.peak_readout(m, rgb.shape[:2], parts)
    if truth is not None:
        shown = draw_ground_truth(shown, truth)
    caption = f"{label} · {peak_words(readout)}{probability_words(probability, class_name)}"
    return shown, caption + (hit_words(readout.hit) if show_parts else "")
