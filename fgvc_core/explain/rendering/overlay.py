"""Display helpers for the app and the batch exporter: heat-map overlays, boxes, mask outlines, PNG bytes, figures.

Every function returns a new ``uint8`` RGB array ``(H, W, 3)`` (or bytes / a figure) and never changes its input.
Images may be a PIL image, a ``uint8`` array ``(H, W, 3)`` / ``(H, W)`` or a float array in [0, 1]. Sizes are
``(H, W)`` like the maps; boxes are ``(x0, y0, x1, y1)`` in pixel-edge coordinates (the DPPM's convention: pixel
``(i, j)`` covers ``[j, j+1) x [i, i+1)``). Figures are built with ``matplotlib.figure.Figure``, never pyplot, so
that concurrent app sessions share no global figure state.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from fgvc_core.errors import ConfigError

# Box colours (RGB), matplotlib's tab10: distinct on photos and on the jet colormap alike.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip
_COLORMAPS = {name[len("COLORMAP_") :].lower(): getattr(cv2, name) for name in dir(cv2) if name.startswith("COLORMAP_")}


def to_rgb_uint8(image: Any) -> np.ndarray:
    """A PIL image, ``uint8`` HWC/HW array or float [0, 1] HWC/HW array -> a new ``uint8`` ``(H, W, 3)`` RGB array.

    Floats are scaled by 255 and rounded; a grey image is repeated over three channels; alpha is dropped.
    """
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ConfigError(f"an image must be (H, W), (H, W, 3) or (H, W, 4), got shape {a.shape}")
    a = a[:, :, :3]
    if a.dtype == np.uint8:
        return a.copy()
    if not np.issubdtype(a.dtype, np.floating):
        raise ConfigError(f"an image array must be uint8 or float in [0, 1], got {a.dtype}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ConfigError("a float image must hold finite values in [0, 1]")
    return np.round(a * 255).astype(np.uint8)


def resize_map(heatmap: Any, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` float map -> ``(H, W)`` float64 by bilinear interpolation (``align_corners=False``)."""
    m = torch.as_tensor(np.asarray(heatmap.detach().cpu() if isinstance(heatmap, torch.Tensor) else heatmap))
    if m.dim() != 2 or 0 in m.shape:
        raise ConfigError(f"a heat map must be (h, w), got shape {tuple(m.shape)}")
    m = m.to(torch.float64)
    if not torch.isfinite(m).all():
        raise ConfigError("the heat map contains NaN or infinite values")
    if tuple(m.shape) == tuple(size):
        return m.numpy()
    # F.interpolate(mode="bilinear", align_corners=False) written out (rows, then columns): the same numbers, and
    # plain elementwise numpy, so no thread pool (torch's or BLAS's) is woken for ~0.1 ms of work per map.
    a = m.numpy()
    low, high, frac = _linear_taps(a.shape[0], int(size[0]))
    a = a[low] * (1.0 - frac)[:, None] + a[high] * frac[:, None]
    low, high, frac = _linear_taps(a.shape[1], int(size[1]))
    return a[:, low] * (1.0 - frac) + a[:, high] * frac


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weight of 1-d linear interpolation with torch's ``align_corners=False`` sampling."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    return low, np.minimum(low + 1, n_in - 1), src - low


def normalize_map(heatmap: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a constant map (range below 1e-12) becomes all zeros: no location is singled out."""
    lo, hi = float(heatmap.min()), float(heatmap.max())
    if hi - lo < 1e-12:
        return np.zeros_like(heatmap, dtype=np.float64)
    return (heatmap - lo) / (hi - lo)


def _colormap(colormap: str | int) -> int:
    if isinstance(colormap, str):
        if colormap.lower() not in _COLORMAPS:
            raise ConfigError(f"unknown colormap {colormap!r}; one of {', '.join(sorted(_COLORMAPS))}")
        return _COLORMAPS[colormap.lower()]
    return int(colormap)


def colorize(heatmap01: np.ndarray, colormap: str | int = "jet") -> np.ndarray:
    """``(H, W)`` values in [0, 1] -> ``uint8`` RGB, exactly as ``show_cam_on_image(..., use_rgb=True)`` colours."""
    heat = cv2.applyColorMap(np.uint8(255 * heatmap01), _colormap(colormap))
    return cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)


def overlay_heatmap(
    image: Any, heatmap: Any, alpha: float = 0.5, colormap: str | int = "jet", library_rescale: bool = False
) -> np.ndarray:
    """Blend a heat map over an image: ``(H, W, 3)`` uint8.

    The map is resized to the image (bilinear), min-max normalised (`normalize_map`) and coloured with the OpenCV
    colormap as pytorch-grad-cam does (`colorize`), so colours match the CAM library. Then
    ``out = round((1 - alpha) * image + alpha * colours)``, so ``alpha=0`` gives the image and ``alpha=1`` the
    colours, exactly.

    Args:
        image: PIL image, uint8 array or float [0, 1] array.
        heatmap: any ``(h, w)`` float map.
        alpha: heat-map weight in [0, 1] (pytorch-grad-cam's ``image_weight`` is ``1 - alpha``).
        colormap: an OpenCV colormap name (``"jet"``, ``"viridis"``, ``"turbo"``...) or ``cv2.COLORMAP_*`` value.
        library_rescale: return ``pytorch_grad_cam.utils.image.show_cam_on_image`` verbatim instead, which divides
            the blend by its maximum (brightening dark images, and at ``alpha=0`` returning ``image / max``) and
            truncates to uint8. Off by default so the image keeps its own brightness.
    """
    if not 0 <= alpha <= 1:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha!r}")
    rgb = to_rgb_uint8(image)
    mask = normalize_map(resize_map(heatmap, rgb.shape[:2]))
    if library_rescale:
        from pytorch_grad_cam.utils.image import show_cam_on_image

        return show_cam_on_image(
            np.float32(rgb) / 255, mask, use_rgb=True, colormap=_colormap(colormap), image_weight=1 - alpha
        )
    blend = (1 - alpha) * rgb.astype(np.float64) + alpha * colorize(mask, colormap).astype(np.float64)
    return np.clip(np.round(blend), 0, 255).astype(np.uint8)


def _color(color: Sequence[int]) -> tuple[int, int, int]:
    c = tuple(int(v) for v in color)
    if len(c) != 3 or any(not 0 <= v <= 255 for v in c):
        raise ConfigError(f"a colour must be three integers in 0..255 (RGB), got {color!r}")
    return c


def draw_boxes(
    image: Any,
    boxes_xyxy: Any,
    colors: Sequence[Sequence[int]] | None = None,
    labels: Sequence[str] | None = None,
    width: int = 2,
    font_scale: float = 0.4,
) -> np.ndarray:
    """Draw boxes (and optional labels) on a copy of the image: ``(H, W, 3)`` uint8.

    A box's edges are rounded to whole pixels and its outline is drawn *inside* it, ``width`` pixels thick, so the
    outline covers exactly the pixels the box covers along its border. A label is written with OpenCV on a filled
    tag of the box colour, above the box (inside it when there is no room above).

    Args:
        image: PIL image, uint8 array or float [0, 1] array.
        boxes_xyxy: ``(N, 4)`` boxes.
        colors: one RGB colour per box; default `PALETTE` in turn.
        labels: one string per box (empty string: no label).
        width: outline thickness in pixels (>= 1).
        font_scale: OpenCV font scale of the labels.
    """
    out = to_rgb_uint8(image)
    b = np.asarray(boxes_xyxy.detach().cpu() if isinstance(boxes_xyxy, torch.Tensor) else boxes_xyxy, np.float64)
    b = b.reshape(-1, 4) if b.size else np.zeros((0, 4))
    if not np.isfinite(b).all():
        raise ConfigError("boxes must be finite (x0, y0, x1, y1)")
    if width < 1:
        raise ConfigError(f"width must be >= 1 pixel, got {width}")
    for name, seq in (("colors", colors), ("labels", labels)):
        if seq is not None and len(seq) != len(b):
            raise ConfigError(f"{len(seq)} {name} for {len(b)} boxes")
    for k, (x0, y0, x1, y1) in enumerate(np.round(b).astype(int)):
        color = _color(colors[k]) if colors is not None else PALETTE[k % len(PALETTE)]
        for t in range(width):  # nested 1-px rectangles: the outline grows inwards only
            if x1 - 1 - t < x0 + t or y1 - 1 - t < y0 + t:
                break
            cv2.rectangle(out, (x0 + t, y0 + t), (x1 - 1 - t, y1 - 1 - t), color, thickness=1)
        if labels is not None and labels[k]:
            _draw_label(out, str(labels[k]), (x0, y0), color, font_scale)
    return out


def _draw_label(out: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int], scale: float):
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x0, y0 = corner
    top = y0 - th - base - 2 if y0 - th - base - 2 >= 0 else y0  # above the box, or inside it at the top
    cv2.rectangle(out, (x0, top), (x0 + tw + 3, top + th + base + 1), color, thickness=-1)
    ink = (0, 0, 0) if 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] > 140 else (255, 255, 255)
    cv2.putText(out, text, (x0 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 1, cv2.LINE_AA)


def grid_to_image_mask(mask: Any, image_size: int | tuple[int, int]) -> np.ndarray:
    """Nearest upsampling of a patch-grid mask ``(gh, gw)`` to ``(H, W)`` bool.

    Pixel ``(i, j)`` takes cell ``(floor((i + 0.5) gh / H), floor((j + 0.5) gw / W))``, the cell its centre lies
    in; when ``H`` is a multiple of ``gh`` every cell becomes a block of ``H / gh`` pixels, as a ViT patch.
    """
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask).astype(bool)
    h, w = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    if m.ndim != 2 or 0 in m.shape or h <= 0 or w <= 0:
        raise ConfigError(f"need a (gh, gw) mask and a positive (H, W), got {m.shape} and {image_size!r}")
    rows = ((np.arange(h) + 0.5) * m.shape[0] / h).astype(int)
    cols = ((np.arange(w) + 0.5) * m.shape[1] / w).astype(int)
    return m[rows[:, None], cols[None, :]]


def mask_outline(mask: Any, width: int = 1) -> np.ndarray:
    """``(H, W)`` bool: the pixels of the mask within ``width`` pixels (4-connected) of its border.

    Outside the image counts as outside the mask, so a component touching the border is closed there too.
    """
    from scipy.ndimage import binary_erosion

    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask).astype(bool)
    if m.ndim != 2:
        raise ConfigError(f"a mask must be (H, W), got shape {m.shape}")
    if width < 1:
        raise ConfigError(f"width must be >= 1 pixel, got {width}")
    return m & ~binary_erosion(m, iterations=width, border_value=0)


def draw_mask_outline(image: Any, mask: Any, color: Sequence[int] = (255, 255, 0), width: int = 2) -> np.ndarray:
    """Paint the outline of a mask on a copy of the image; a patch-grid mask is first upsampled to the image."""
    out = to_rgb_uint8(image)
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask).astype(bool)
    if m.shape != out.shape[:2]:
        m = grid_to_image_mask(m, out.shape[:2])
    out[mask_outline(m, width)] = _color(color)
    return out


def array_to_png_bytes(array: Any) -> bytes:
    """An image (see `to_rgb_uint8`; a uint8 ``(H, W)`` stays grey) -> lossless PNG bytes."""
    a = np.asarray(array)
    pil = Image.fromarray(a) if a.dtype == np.uint8 and a.ndim == 2 else Image.fromarray(to_rgb_uint8(array))
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def figure_to_png_bytes(fig: Figure, dpi: int | None = None) -> bytes:
    """A matplotlib figure -> PNG bytes (for the app's download buttons)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def export_figure(
    panels: Sequence[Any],
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    path: str | Path | None = None,
    panel_size: float = 3.0,
    dpi: int = 100,
) -> Figure:
    """A one-row figure of images (overlays, crops) with a title over each, saved to ``path`` when given.

    Args:
        panels: images (see `to_rgb_uint8`); each is shown as is, axes hidden.
        titles: one title per panel.
        suptitle: a title over the row.
        path: where to save it (format from the suffix, e.g. ``.png`` or ``.pdf``).
        panel_size: inches per panel.
        dpi: resolution of the figure and of the saved file.
    """
    if not panels:
        raise ConfigError("export_figure needs at least one panel")
    if titles is not None and len(titles) != len(panels):
        raise ConfigError(f"{len(titles)} titles for {len(panels)} panels")
    fig = Figure(figsize=(panel_size * len(panels), panel_size + (0.4 if suptitle else 0.0)), dpi=dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for k, (ax, panel) in enumerate(zip(axes, panels)):
        ax.imshow(to_rgb_uint8(panel), interpolation="nearest")
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig
