"""Static figures of CRA-SMRA's channel re-attention (CRAM) and of SMRAM, from a ``CraSmraTrace``.

Re-exported by :mod:`fgvc_core.explain.rendering.figures`. Channel maps come from the trace itself: it holds each
stage's output ``X`` (``stage_output``, all C channels) and the importance ``I``, so the re-weighted channel ``I_c·X_c``
(the channel of CRAM's enhanced map ``X_e = I ⊗ X`` before the ``Conv_layer``) is exact without any change to
the model; ``enhanced`` (after the ``Conv_layer``, C_a channels) can be shown too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from fgvc_core.errors import ConfigError
from fgvc_core.explain.rendering.figure_utils import BAR_COLOR, as_numpy, batch_row, map_panel, new_figure

SUPPRESSED_COLOR = "#d62728"
CHANNEL_SOURCES = ("reweighted", "stage", "enhanced")


def _stage(trace: Any, stage: int) -> Any:
    try:
        return trace.stage(stage)
    except KeyError:
        raise ConfigError(f"stage must be one of {[s.stage for s in trace.stages]}, got {stage!r}") from None


def channel_order(importance: np.ndarray, top_k: int | None = None, sort: bool = True) -> np.ndarray:
    """Channels to show: all (or the ``top_k`` most important), by decreasing ``I`` or in channel order.

    Ties keep channel order (stable sort), so the result is deterministic.
    """
    ranked = np.argsort(-importance, kind="stable")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive integer or None, got {top_k!r}")
        ranked = ranked[:top_k]
    return ranked if sort else np.sort(ranked)


def cram_channels_figure(trace: Any, stage: int, top_k: int | None = None, index: int = 0, sort: bool = True) -> Figure:
    """Bars of CRAM's ``I`` (sigmoid importance), ``I* = softmax(I)`` and ``S`` for one stage.

    Suppressed channels (``I*_c ≥ δ·max I*``, where ``S = ω``) are drawn red, the others blue; the ``I*`` panel has
    the dashed ``δ·max I*`` line. Variants without CRAM show what they have (``cbam``: ``I`` only).

    Args:
        trace: a ``CraSmraTrace``.
        stage: 3, 4 or 5.
        top_k: only the ``top_k`` channels of highest ``I`` (default all).
        index: which image of the traced batch.
        sort: order bars by decreasing ``I`` (default) instead of by channel index.

    Raises:
        ConfigError: the variant has no channel importance (``base``), or a bad stage/option.
    """
    st = _stage(trace, stage)
    if st.importance is None:
        raise ConfigError(f"variant {trace.variant!r} has no channel importance to plot")
    importance = batch_row(st.importance, index, 1)
    order = channel_order(importance, top_k, sort)
    suppressed = (
        batch_row(st.suppressed_channels, index, 1) > 0.5
        if st.suppressed_channels is not None
        else np.zeros(importance.size, bool)
    )
    colors = [SUPPRESSED_COLOR if suppressed[c] else BAR_COLOR for c in order]
    n_sup, total = int(suppressed.sum()), importance.size
    panels = [("I = σ(MLP(avg) + MLP(max))", importance)]
    if st.importance_softmax is not None:
        panels.append(("I* = softmax(I)", batch_row(st.importance_softmax, index, 1)))
    if st.suppression is not None:
        panels.append((f"S (ω={trace.omega:g} on suppressed, else 1)", batch_row(st.suppression, index, 1)))
    fig, axes = new_figure(len(panels), 1, panel=min(16.0, max(6.0, 0.12 * len(order))), height=1.9)
    for row, (name, values) in enumerate(panels):
        ax = axes[row, 0]
        ax.bar(np.arange(len(order)), values[order], color=colors, width=0.85)
        ax.set_title(name, fontsize=8)
        ax.set_xlim(-0.6, len(order) - 0.4)
        if len(order) <= 40:
            ax.set_xticks(np.arange(len(order)), [str(c) for c in order], fontsize=6, rotation=90)
        else:
            ax.set_xticks([])
        ax.tick_params(axis="y", labelsize=7)
        if name.startswith("I*") and trace.delta is not None:
            line = trace.delta * float(values.max())
            ax.axhline(line, color="k", linestyle="--", linewidth=0.8)
            ax.set_title(f"{name}; δ·max = {trace.delta:g}·{values.max():.4g} = {line:.4g}", fontsize=8)
    shown = f"top {len(order)} of {total}" if len(order) < total else f"all {total}"
    order_text = "by decreasing I" if sort else "in channel order"
    fig.suptitle(
        f"stage {stage} CRAM: {n_sup}/{total} channels suppressed (red); {shown} channels {order_text}", fontsize=9
    )
    return fig


def channel_maps(trace: Any, stage: int, index: int = 0, source: str = "reweighted") -> tuple[np.ndarray, np.ndarray]:
    """Per-channel maps ``(C, h, w)`` of one image and the score that ranks them ``(C,)``.

    ``source``:
        - ``"reweighted"`` (default): ``I_c · X_c``, ranked by ``I`` (needs channel importance);
        - ``"stage"``: ``X_c``, ranked by ``I`` when the variant has it, else by the channel's mean activation;
        - ``"enhanced"``: the ``C_a`` channels of ``X_e`` after the ``Conv_layer``, ranked by their global max
          (the value the stage head pools).
    """
    st = _stage(trace, stage)
    if source not in CHANNEL_SOURCES:
        raise ConfigError(f"source must be one of {', '.join(CHANNEL_SOURCES)}, got {source!r}")
    if source == "enhanced":
        maps = batch_row(st.enhanced, index, 3)
        return maps, maps.reshape(maps.shape[0], -1).max(axis=1)
    x = batch_row(st.stage_output, index, 3)
    if st.importance is None:
        if source == "reweighted":
            raise ConfigError(f"variant {trace.variant!r} has no channel importance; use source='stage'")
        return x, x.reshape(x.shape[0], -1).mean(axis=1)
    importance = batch_row(st.importance, index, 1)
    return (importance[:, None, None] * x if source == "reweighted" else x), importance


def channel_maps_figure(trace: Any, stage: int, k: int = 4, index: int = 0, source: str = "reweighted") -> Figure:
    """The ``k`` highest- and ``k`` lowest-ranked channel maps of one stage (see :func:`channel_maps`).

    Row 1: top-``k`` channels (best first); row 2: bottom-``k`` (the weakest last). All panels share one colour
    scale (one colour bar), so weak channels look weak. Titles give channel index, score and ``(supp.)`` for a
    channel CRAM suppresses.

    Args:
        trace: a ``CraSmraTrace``.
        stage: 3, 4 or 5.
        k: channels per row (at most half the channels).
        index: which image of the traced batch.
        source: ``"reweighted"`` (default), ``"stage"`` or ``"enhanced"``.
    """
    maps, score = channel_maps(trace, stage, index, source)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= maps.shape[0] // 2:
        raise ConfigError(f"k must be an integer in [1, {maps.shape[0] // 2}] (half the channels), got {k!r}")
    ranked = np.argsort(-score, kind="stable")
    rows = [("top", ranked[:k]), ("bottom", ranked[-k:])]
    st = _stage(trace, stage)
    suppressed = None
    if source != "enhanced" and st.suppressed_channels is not None:
        suppressed = batch_row(st.suppressed_channels, index, 1) > 0.5
    score_name = "max" if source == "enhanced" else ("I" if st.importance is not None else "mean")
    lo, hi = float(maps.min()), float(maps.max())
    fig, axes = new_figure(2, k, panel=2.0)
    image = None
    for row, (name, channels) in enumerate(rows):
        for col, c in enumerate(channels):
            mark = " (supp.)" if suppressed is not None and suppressed[c] else ""
            title = f"{name} c{c}: {score_name}={score[c]:.3f}{mark}"
            image = map_panel(axes[row, col], maps[c], title, vmin=lo, vmax=hi)
    fig.colorbar(image, ax=axes, shrink=0.7)
    what = {"reweighted": "I·X", "stage": "X", "enhanced": "X_e (after Conv_layer)"}[source]
    fig.suptitle(f"stage {stage} channel maps {what}: top-{k} / bottom-{k} by {score_name}", fontsize=9)
    return fig


def smram_figure(trace: Any, index: int = 0) -> Figure:
    """SMRAM's three spatial-softmax maps (stages 3, 4, 5), their cross-channel max (CCMP) and ``L_div``.

    ``h = Σ_pixels max_stage map`` lies in [1, 3] (1: the stages look at the same place, 3: disjoint places) and
    ``L_div = 1 - h/3``; both are in the titles.
    """
    if trace.smram_maps is None:
        raise ConfigError(f"variant {trace.variant!r} has no SMRAM maps")
    maps = batch_row(trace.smram_maps, index, 3)
    ccmp = maps.max(axis=0)
    h = float(ccmp.sum())
    stages = [s.stage for s in trace.stages]
    fig, axes = new_figure(1, maps.shape[0] + 1, panel=2.4)
    scale = {"vmin": 0.0, "vmax": float(maps.max())}  # one colour scale: the maps and their max are comparable
    for col, (stage, m) in enumerate(zip(stages, maps)):
        map_panel(axes[0, col], m, f"stage {stage} map\nmax {m.max():.3f}", **scale)
    im = map_panel(axes[0, -1], ccmp, f"CCMP (max over stages)\nh = {h:.3f}", **scale)
    fig.colorbar(im, ax=axes[0, -1], shrink=0.8)
    l_div = as_numpy(trace.l_div_per_image).reshape(-1)[index] if trace.l_div_per_image is not None else 1 - h / 3
    fig.suptitle(f"SMRAM: L_div = 1 - h/3 = {l_div:.4f}", fontsize=10)
    return fig
