"""Static figures (matplotlib) of every view the app shows, for PNG/PDF export and the batch exporter.

Each builder takes a trace (or plain maps) and returns a new ``matplotlib.figure.Figure``; none touches pyplot, so
concurrent app sessions share no global figure state and nothing needs closing. Traces are batched: ``index``
picks the image. Titles carry the numbers a reader needs (top-1 class and probability, thresholds, counts, peaks),
so an exported PNG stands on its own. The CRAM/SMRAM builders live in
:mod:`fgvc_core.explain.rendering.figure_cra` and are re-exported here, so
``from fgvc_core.explain.rendering.figures import ...`` reaches every builder; shared helpers are in
:mod:`fgvc_core.explain.rendering.figure_utils`.

Images may be a PIL image, a ``uint8``/float ``(H, W, 3)`` array, or a network-input tensor ``(3, H, W)``: a tensor
is de-normalised with ``preprocess`` (the checkpoint's) when given, else min-max scaled for display only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from fgvc_core.errors import ConfigError
from fgvc_core.explain.rendering.figure_cra import (
    channel_maps_figure,
    cram_channels_figure,
    smram_figure,
)
from fgvc_core.explain.rendering.figure_utils import (
    as_numpy,
    batch_row,
    check_names,
    display_image,
    image_panel,
    map_panel,
    new_figure,
    peak,
    top1_label,
    topk_bars,
)
from fgvc_core.explain.rendering.overlay import draw_boxes, draw_mask_outline, grid_to_image_mask, overlay_heatmap

__all__ = [
    "attention_layers_figure",
    "channel_maps_figure",
    "cram_channels_figure",
    "dppm_figure",
    "prediction_figure",
    "rollout_figure",
    "smram_figure",
    "stage_cam_figure",
]


# ---------------------------------------------------------------------------------------------- RAMS-Trans
def _threshold(options: Mapping[str, Any], scale: int) -> float:
    values = options.get("threshold", [float("nan")])
    values = values if isinstance(values, Sequence) else [values]
    return float(values[min(scale, len(values) - 1)])


def _box_text(box: np.ndarray) -> str:
    return ",".join(f"{v:.0f}" for v in box)


def dppm_figure(
    trace: Any,
    image: Any = None,
    class_names: Sequence[str] | None = None,
    index: int = 0,
    k: int = 3,
    preprocess: Mapping[str, Any] | None = None,
) -> Figure:
    """The DPPM of every scale, one row per scale, four panels per row.

    1. What the scale saw, with the box its DPPM proposes (the next scale's region; on the last scale the box is
       shown but leads nowhere). On scale 1, when ``image`` (the uploaded original) is given and the trace has
       ``box_original``, the original image is shown with that box in its own pixels.
    2. The attention rollout over that input.
    3. The thresholded mask (``rollout > α·mean``; dimmed outside) and the outline of the kept component.
    4. The scale's top-``k`` prediction; the title holds its top-1 class and probability.

    The figure title holds the combined prediction (mean of the scales' softmaxes).

    Args:
        trace: a ``RamsTransTrace``.
        image: the original image (optional).
        class_names: class names (default ``class i``).
        index: which image of the traced batch.
        k: classes in each prediction panel.
        preprocess: the checkpoint's preprocess dict, to de-normalise the crops.
    """
    scales = trace.scales
    check_names(class_names, int(trace.probs.shape[-1]))
    fig, axes = new_figure(len(scales), 4)
    for s, sc in enumerate(scales):
        crop = display_image(sc.crop[index], preprocess)
        proposal = batch_row(sc.proposal_box, index, 1)
        nxt = scales[s + 1] if s + 1 < len(scales) else None
        where = f"box → scale {s + 2}" if nxt is not None else "box (unused: last scale)"
        if s == 0 and image is not None and nxt is not None and nxt.box_original is not None:
            original = batch_row(nxt.box_original, index, 1)
            base = display_image(image, preprocess)
            shown = draw_boxes(base, original[None], width=max(2, min(base.shape[:2]) // 150))
            box = original
            where += " (original px)"
        else:
            shown, box = draw_boxes(crop, proposal[None], width=max(1, crop.shape[0] // 112)), proposal
        image_panel(axes[s, 0], shown, f"scale {s + 1} input\n{where}: {_box_text(box)}")

        rollout = batch_row(sc.rollout, index, 2)
        value, r, c = peak(rollout)
        title = f"rollout ({trace.options.get('rollout_query', 'cls')}, {trace.options.get('head_fusion', 'mean')})"
        image_panel(axes[s, 1], overlay_heatmap(crop, rollout), f"{title}\npeak at cell ({r},{c})")

        mask = batch_row(sc.mask, index, 2) > 0.5
        component = batch_row(sc.component, index, 2) > 0.5
        inside = grid_to_image_mask(mask, crop.shape[:2])
        dimmed = np.round(crop * np.where(inside, 1.0, 0.35)[:, :, None]).astype(np.uint8)
        outlined = draw_mask_outline(dimmed, component, width=max(1, crop.shape[0] // 112))
        alpha = _threshold(trace.options, s)
        image_panel(
            axes[s, 2], outlined, f"mask α={alpha:g}: {int(mask.sum())}/{mask.size} cells\nkept {int(component.sum())}"
        )

        probs = batch_row(sc.probs, index, 1)
        topk_bars(axes[s, 3], probs, class_names, k)
        axes[s, 3].set_title(f"scale{s + 1}: {top1_label(probs, class_names)}", fontsize=8)
    fig.suptitle(f"RAMS-Trans DPPM: combined {top1_label(batch_row(trace.probs, index, 1), class_names)}", fontsize=10)
    return fig


def attention_layers_figure(
    trace: Any,
    scale: int = 0,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    index: int = 0,
    include_mean: bool = True,
) -> Figure:
    """The CLS row of every layer's (and head's) attention, on the patch grid: where the CLS token looks.

    One row per layer, one column per head, plus (``include_mean``) a column with the head mean, which is what
    the rollout fuses by default. Each panel has its own colour scale; its title gives its maximum.

    Args:
        trace: a ``RamsTransTrace``.
        scale: 0-based scale.
        layers: 0-based block indices (default all).
        heads: 0-based head indices (default all).
        index: which image of the traced batch.
        include_mean: add the head-mean column.
    """
    if not 0 <= scale < len(trace.scales):
        raise ConfigError(f"scale must be in [0, {len(trace.scales) - 1}], got {scale!r}")
    sc = trace.scales[scale]
    attentions = [batch_row(a, index, 3) for a in sc.attentions]  # (H, N, N) each
    gh, gw = sc.rollout.shape[-2:]
    num_layers, num_heads = len(attentions), attentions[0].shape[0]
    layers = list(range(num_layers)) if layers is None else list(layers)
    heads = list(range(num_heads)) if heads is None else list(heads)
    if not layers or any(not 0 <= v < num_layers for v in layers):
        raise ConfigError(f"layers must be indices in [0, {num_layers - 1}], got {layers}")
    if not heads or any(not 0 <= v < num_heads for v in heads):
        raise ConfigError(f"heads must be indices in [0, {num_heads - 1}], got {heads}")
    prefix = attentions[0].shape[-1] - gh * gw  # the CLS token(s) before the patches
    cols = len(heads) + int(include_mean)
    fig, axes = new_figure(len(layers), cols, panel=1.8)
    for row, layer in enumerate(layers):
        cls_rows = attentions[layer][:, 0, prefix:].reshape(num_heads, gh, gw)
        maps = [(f"L{layer + 1} h{h + 1}", cls_rows[h]) for h in heads]
        if include_mean:
            maps.append((f"L{layer + 1} mean", cls_rows.mean(axis=0)))
        for col, (name, m) in enumerate(maps):
            map_panel(axes[row, col], m, f"{name}\nmax {m.max():.3f}")
    fig.suptitle(f"scale {scale + 1}: CLS → patch attention per layer and head", fontsize=10)
    return fig


def rollout_figure(
    image: Any, rollout: Any, title: str, preprocess: Mapping[str, Any] | None = None, alpha: float = 0.5
) -> Figure:
    """Any patch or pixel map over its image: the image, the raw map (with a colour bar) and the overlay.

    Used for attention rollout, gradient rollout and ViT CAMs. ``rollout`` is ``(h, w)`` (or a batch of one).
    """
    rgb = display_image(image, preprocess)
    m = batch_row(rollout, 0, 2) if as_numpy(rollout).ndim == 3 and len(rollout) == 1 else as_numpy(rollout)
    if m.ndim != 2:
        raise ConfigError(f"the map must be (h, w), got shape {m.shape}")
    value, r, c = peak(m)
    fig, axes = new_figure(1, 3)
    image_panel(axes[0, 0], rgb, "input")
    im = map_panel(axes[0, 1], m, f"{m.shape[0]}×{m.shape[1]} map\npeak {value:.3f} at ({r},{c})")
    fig.colorbar(im, ax=axes[0, 1], shrink=0.8)
    image_panel(axes[0, 2], overlay_heatmap(rgb, m, alpha=alpha), "overlay")
    fig.suptitle(title, fontsize=10)
    return fig


def prediction_figure(
    probs: Any, class_names: Sequence[str] | None, k: int = 5, index: int = 0, title: str = "prediction"
) -> Figure:
    """Top-``k`` classes of a ``(K,)`` (or batched) probability vector; the title holds the top-1 and its value."""
    p = batch_row(probs, index, 1)
    check_names(class_names, p.size)
    fig, axes = new_figure(1, 1, panel=4.0, height=0.35 * min(k, p.size) + 0.9)
    topk_bars(axes[0, 0], p, class_names, k)
    axes[0, 0].set_title(f"{title}: {top1_label(p, class_names)}", fontsize=9)
    return fig


def stage_cam_figure(
    image: Any,
    cams: Mapping[int, Any],
    titles: Mapping[int, str] | Sequence[str] | None = None,
    preprocess: Mapping[str, Any] | None = None,
    index: int = 0,
    alpha: float = 0.5,
) -> Figure:
    """The image and one CAM overlay per stage side by side (the paper's Figs. 4-6).

    Args:
        image: the network input (tensor, de-normalised with ``preprocess``) or any displayable image.
        cams: ``{stage: map}`` with ``(H, W)`` maps, or ``(B, H, W)`` batches as ``stage_cams`` returns them.
        titles: per stage (a mapping by stage or a sequence in the order of ``cams``); default ``stage s``. The
            peak position (input pixels ``x, y``) is appended to every title.
        preprocess: the checkpoint's preprocess dict.
        index: which image when the maps are batched.
        alpha: heat-map weight of the overlays.
    """
    if not cams:
        raise ConfigError("stage_cam_figure needs at least one CAM")
    stages = list(cams)
    if titles is not None and not isinstance(titles, Mapping):
        if len(titles) != len(stages):
            raise ConfigError(f"{len(titles)} titles for {len(stages)} CAMs")
        titles = dict(zip(stages, titles))
    rgb = display_image(image, preprocess)
    fig, axes = new_figure(1, len(stages) + 1)
    image_panel(axes[0, 0], rgb, "input")
    for col, stage in enumerate(stages, start=1):
        m = batch_row(cams[stage], index, 2)
        _, r, c = peak(m)
        where = f"peak at x={c}, y={r}" if m.max() - m.min() > 1e-12 else "flat map (no peak)"
        name = titles.get(stage, f"stage {stage}") if titles is not None else f"stage {stage}"
        image_panel(axes[0, col], overlay_heatmap(rgb, m, alpha=alpha), f"{name}\n{where}")
    return fig
