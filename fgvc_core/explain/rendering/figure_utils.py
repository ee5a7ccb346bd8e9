"""Helpers shared by the static figure builders.

Used by :mod:`fgvc_core.explain.rendering.figures` and :mod:`fgvc_core.explain.rendering.figure_cra`.

Batch indexing, image display (de-normalising network-input tensors), probability formatting and the top-k bar
panel, so that every figure writes numbers the same way and the tests can recompute a title exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from fgvc_core.errors import ConfigError
from fgvc_core.explain.rendering.overlay import to_rgb_uint8

PANEL_INCHES = 2.6
BAR_COLOR = "#1f77b4"
TOP1_COLOR = "#d62728"


def new_figure(rows: int, cols: int, panel: float = PANEL_INCHES, height: float | None = None) -> tuple[Figure, Any]:
    """A constrained-layout figure with a ``(rows, cols)`` array of axes (never squeezed)."""
    fig = Figure(figsize=(panel * cols, (height or panel) * rows), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def as_numpy(value: Any) -> np.ndarray:
    """Tensor or array-like -> a float64 numpy array (detached, on the CPU)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def batch_row(value: Any, index: int, ndim: int) -> np.ndarray:
    """Item ``index`` of a batched value whose items have ``ndim`` dims; an unbatched value is returned as is."""
    a = as_numpy(value)
    if a.ndim == ndim + 1:
        if not -a.shape[0] <= index < a.shape[0]:
            raise ConfigError(f"index {index} is out of range for a batch of {a.shape[0]}")
        return a[index]
    if a.ndim != ndim:
        raise ConfigError(f"expected a {ndim}-d value or a batch of them, got shape {a.shape}")
    return a


def display_image(image: Any, preprocess: Mapping[str, Any] | None = None) -> np.ndarray:
    """Any supported image (see the module docstring) -> ``uint8 (H, W, 3)`` for display."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu().float()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ConfigError(f"an image tensor must be (3, H, W), got {tuple(image.shape)}")
        if preprocess is not None:
            from fgvc_core.data.transforms import denormalize

            t = denormalize(t, preprocess)
        else:  # display only: stretch to [0, 1]
            lo, hi = float(t.min()), float(t.max())
            t = (t - lo) / (hi - lo) if hi - lo > 1e-12 else torch.zeros_like(t)
        return to_rgb_uint8(t.permute(1, 2, 0).numpy())
    return to_rgb_uint8(image)


def class_name(class_names: Sequence[str] | None, k: int) -> str:
    return str(class_names[k]) if class_names is not None and k < len(class_names) else f"class {k}"


def format_prob(p: float) -> str:
    """How every figure and plot writes a probability: a percentage with one decimal."""
    return f"{100.0 * float(p):.1f}%"


def top1_label(probs: np.ndarray, class_names: Sequence[str] | None) -> str:
    """``"<class> <prob>"`` of the most probable class of a ``(K,)`` probability vector."""
    k = int(np.argmax(probs))
    return f"{class_name(class_names, k)} {format_prob(probs[k])}"


def check_names(class_names: Sequence[str] | None, num_classes: int) -> None:
    if class_names is not None and len(class_names) != num_classes:
        raise ConfigError(f"{len(class_names)} class names for {num_classes} classes")


def topk_bars(ax: Any, probs: np.ndarray, class_names: Sequence[str] | None, k: int) -> list[int]:
    """Horizontal bars of the ``k`` most probable classes, best on top; returns the class indices drawn."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    order = [int(c) for c in np.argsort(-probs, kind="stable")[: min(k, probs.size)]]
    values = [float(probs[c]) for c in order]
    colors = [TOP1_COLOR] + [BAR_COLOR] * (len(order) - 1)
    ax.barh(range(len(order)), values, color=colors)
    ax.set_yticks(range(len(order)), [class_name(class_names, c) for c in order], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    for y, v in enumerate(values):
        ax.text(min(v, 0.75) + 0.02, y, format_prob(v), va="center", fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    return order


def image_panel(ax: Any, rgb: np.ndarray, title: str) -> None:
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)


def map_panel(ax: Any, m: np.ndarray, title: str, **kwargs: Any) -> Any:
    im = ax.imshow(m, cmap=kwargs.pop("cmap", "viridis"), interpolation="nearest", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    return im


def peak(m: np.ndarray) -> tuple[float, int, int]:
    """``(value, row, col)`` of the first maximum of a 2-d map."""
    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    return float(m[r, c]), int(r), int(c)
