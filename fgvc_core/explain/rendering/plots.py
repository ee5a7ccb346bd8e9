"""Interactive figures (plotly) for the app and the HTML export.

Every builder returns a new ``plotly.graph_objects.Figure`` that carries the exact numbers it was given (bar
heights, heat-map values), so hover text and exported HTML can be trusted and tests can compare them directly.
Batched tensors take ``index`` to pick the image; ``(K,)``/``(C,)``/``(h, w)`` values are used as they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fgvc_core.errors import ConfigError
from fgvc_core.explain.rendering.figure_utils import BAR_COLOR, batch_row, check_names, class_name, format_prob

SUPPRESSED_COLOR = "#d62728"
COMBINED_COLOR = "#444444"
# Names the training curves skip unless asked for: they are not losses or accuracies.
_NOT_CURVES = ("lr", "img_per_s")


def _row(value: Any, index: int) -> np.ndarray:
    return batch_row(value, index, 1)


def topk_bar(
    head_probs: Mapping[str, Any],
    class_names: Sequence[str] | None,
    k: int = 5,
    index: int = 0,
    combined: Any = None,
) -> go.Figure:
    """Grouped bars: the probability every head gives to the ``k`` leading classes, plus the combined prediction.

    The classes are the top-``k`` of ``combined`` when given, else of the mean of the heads (both models'
    combined rule), best first; so one can see which scale/stage agrees with the final answer.

    Args:
        head_probs: ``{head name: (B, K) or (K,) probabilities}`` (e.g. ``trace.head_probs`` or per scale).
        class_names: names of the K classes (default ``class i``).
        k: classes shown.
        index: which image of a batch.
        combined: the combined ``(B, K)``/``(K,)`` probabilities, drawn as the last group member ``combined``.
    """
    if not head_probs:
        raise ConfigError("topk_bar needs at least one head")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    rows = {name: _row(p, index) for name, p in head_probs.items()}
    if combined is not None:
        rows["combined"] = _row(combined, index)
    sizes = {r.size for r in rows.values()}
    if len(sizes) != 1:
        raise ConfigError(f"all heads must have the same number of classes, got sizes {sorted(sizes)}")
    check_names(class_names, sizes.pop())
    rank = rows["combined"] if combined is not None else np.mean([rows[n] for n in head_probs], axis=0)
    classes = [int(c) for c in np.argsort(-rank, kind="stable")[:k]]
    labels = [class_name(class_names, c) for c in classes]
    fig = go.Figure()
    for name, probs in rows.items():
        values = [float(probs[c]) for c in classes]
        fig.add_trace(
            go.Bar(
                name=name,
                x=labels,
                y=values,
                text=[format_prob(v) for v in values],
                hovertemplate="%{x}: %{y:.4f}<extra>" + name + "</extra>",
                marker_color=COMBINED_COLOR if name == "combined" and combined is not None else None,
            )
        )
    top = rank[classes[0]]
    fig.update_layout(
        barmode="group",
        title=f"top-{len(classes)} classes: {labels[0]} {format_prob(top)}",
        yaxis={"title": "probability", "range": [0, 1]},
        legend_title_text="head",
    )
    return fig


def channel_bars(
    importance: Any,
    importance_softmax: Any = None,
    suppression: Any = None,
    suppressed: Any = None,
    sort: bool = False,
    index: int = 0,
    top_k: int | None = None,
    delta: float | None = None,
    omega: float | None = None,
) -> go.Figure:
    """CRAM's ``I``, ``I*`` and ``S`` per channel as stacked bar panels; suppressed channels in red.

    Args:
        importance: ``I`` (B, C) or (C,).
        importance_softmax: ``I*``; its panel is left out when None.
        suppression: ``S``; its panel is left out when None.
        suppressed: bool mask of the channels CRAM suppresses (default: none marked).
        sort: order channels by decreasing ``I`` instead of by index.
        index: which image of a batch.
        top_k: only the ``top_k`` channels of highest ``I``.
        delta: when given, the ``I*`` panel gets the dashed line ``δ·max I*``.
        omega: when given, ``S`` is also drawn as dots on a fixed 0-1 axis and its title names ω. A suppressed
            channel's ``S`` is ω, so at ω = 0 its bar has height 0 and the channels shown first (highest ``I``, the
            suppressed ones) would draw an empty panel; the dots mark those zeros.

    The figure is written as one dict and validated once (``go.Figure(dict)``) rather than through
    ``make_subplots`` and ``add_hline``, whose per-property updates took ~3x longer; a CRAM δ step builds it on
    every slider press.
    """
    from fgvc_core.explain.rendering.figure_cra import channel_order

    imp = _row(importance, index)
    order = channel_order(imp, top_k, sort)
    marks = _row(suppressed, index) > 0.5 if suppressed is not None else np.zeros(imp.size, bool)
    panels = [("I", imp)]
    panels += [("I*", _row(importance_softmax, index))] if importance_softmax is not None else []
    panels += [("S", _row(suppression, index))] if suppression is not None else []
    for name, values in panels:
        if values.size != imp.size:
            raise ConfigError(f"{name} has {values.size} channels, I has {imp.size}")
    layout = _stacked_panels([name for name, _ in panels])
    labels = [f"c{c}" for c in order]  # categorical axis: keeps the (sorted) order
    colors = [SUPPRESSED_COLOR if marks[c] else BAR_COLOR for c in order]
    data: list[dict] = []
    shapes: list[dict] = []
    for row, (name, values) in enumerate(panels, start=1):
        axes = {"xaxis": _axis_name("x", row), "yaxis": _axis_name("y", row)}
        ys = [float(v) for v in values[order]]
        data.append({"type": "bar", "x": labels, "y": ys, "name": name, "marker": {"color": colors},
                     "showlegend": False, **axes})  # fmt: skip
        if name == "I*" and delta is not None:
            level = delta * float(values.max())
            shapes.append({"type": "line", "xref": f"{axes['xaxis']} domain", "x0": 0, "x1": 1,
                           "yref": axes["yaxis"], "y0": level, "y1": level, "line": {"dash": "dash"}})  # fmt: skip
        if name == "S" and omega is not None:
            dots = [SUPPRESSED_COLOR if marks[c] else COMBINED_COLOR for c in order]
            data.append({"type": "scatter", "x": labels, "y": ys, "mode": "markers", "name": "S",
                         "marker": {"color": dots, "size": 6}, "showlegend": False,
                         "hovertemplate": "%{x}: S = %{y:.2f}<extra></extra>", **axes})  # fmt: skip
            layout[_axis_name("yaxis", row)]["range"] = [-0.05, 1.05]
            title = f"S = ω = {omega:g} on a suppressed channel (red), 1 elsewhere"
            if omega == 0:
                title += ": suppressed channels are zeroed (dots at 0)"
            layout["annotations"][row - 1]["text"] = title
    layout.update(shapes=shapes, height=220 * len(panels) + 80, bargap=0.1,
                  title={"text": f"{int(marks.sum())}/{imp.size} channels suppressed (red)"})  # fmt: skip
    return go.Figure({"data": data, "layout": layout})


def _axis_name(axis: str, row: int) -> str:
    """Plotly's name of panel ``row``'s axis: ``x``/``xaxis`` for the first, ``x2``/``xaxis2``... after."""
    return axis if row == 1 else f"{axis}{row}"


def _stacked_panels(titles: Sequence[str]) -> dict[str, Any]:
    """The layout of ``make_subplots(rows=n, cols=1, shared_xaxes=True, subplot_titles=titles)``, as a plain dict.

    Panels top to bottom over one categorical x axis (ticks on the lowest panel only), each titled above.
    """
    n = len(titles)
    gap = 0.5 / n if n > 1 else 0.0
    height = (1.0 - gap * (n - 1)) / n
    layout: dict[str, Any] = {"annotations": []}
    for row, title in enumerate(titles, start=1):
        top = 1.0 - (row - 1) * (height + gap)
        x, y = _axis_name("x", row), _axis_name("y", row)
        shared = {"matches": _axis_name("x", n), "showticklabels": False} if row < n else {}
        layout[_axis_name("xaxis", row)] = {"anchor": y, "domain": [0.0, 1.0], "type": "category", **shared}
        layout[_axis_name("yaxis", row)] = {"anchor": x, "domain": [max(top - height, 0.0), top]}
        layout["annotations"].append({"text": title, "x": 0.5, "xanchor": "center", "xref": "paper", "y": top,
                                      "yanchor": "bottom", "yref": "paper", "showarrow": False,
                                      "font": {"size": 16}})  # fmt: skip
    return layout


def heatmap(
    map2d: Any,
    title: str,
    colorscale: str = "Viridis",
    zmin: float | None = None,
    zmax: float | None = None,
    index: int = 0,
) -> go.Figure:
    """A 2-d map ``(h, w)`` (or item ``index`` of a batch) as a heat map in image orientation, square cells."""
    z = batch_row(map2d, index, 2)
    fig = go.Figure(go.Heatmap(z=z.tolist(), colorscale=colorscale, zmin=zmin, zmax=zmax))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_xaxes(constrain="domain")
    fig.update_layout(title=title)
    return fig


def sweep_plot(
    values: Sequence[float], metrics: Mapping[str, Sequence[float]], x_label: str, title: str | None = None
) -> go.Figure:
    """Metrics against a swept option (δ, γ, the threshold α), one line per metric, like the paper's Tables 4-5.

    The best point of each metric (its maximum) is marked with a star; NaN values leave gaps.
    """
    xs = [float(v) for v in values]
    if not xs or not metrics:
        raise ConfigError("sweep_plot needs swept values and at least one metric")
    fig = go.Figure()
    for name, ys in metrics.items():
        ys = [float(v) for v in ys]
        if len(ys) != len(xs):
            raise ConfigError(f"metric {name!r} has {len(ys)} values for {len(xs)} swept values")
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name))
        finite = [i for i, y in enumerate(ys) if math.isfinite(y)]
        if finite:
            best = max(finite, key=lambda i: ys[i])
            fig.add_trace(
                go.Scatter(
                    x=[xs[best]],
                    y=[ys[best]],
                    mode="markers",
                    marker={"symbol": "star", "size": 14},
                    name=f"best {name}",
                    showlegend=False,
                )
            )
    fig.update_layout(title=title or f"metrics vs {x_label}", xaxis_title=x_label, yaxis_title="value")
    return fig


def metric_group(name: str) -> str:
    """``"accuracy"`` for accuracy-like names (``acc``, ``*_top1``, ``*_top5``), ``"loss"`` for the rest."""
    return "accuracy" if "acc" in name or "top1" in name or "top5" in name else "loss"


def training_curves(
    series: Mapping[tuple[str, str], Sequence[tuple[int, float]]],
    names: Sequence[str] | None = None,
    source: str = "metrics.csv",
) -> go.Figure:
    """Losses (top panel) and accuracies (bottom panel) against the optimiser step, one line per split and name.

    Args:
        series: ``{(split, name): [(step, value), ...]}``, as ``fgvc_core.engine.logging.read_metrics_csv`` reads a
            run's ``metrics.csv``.
        names: metric names to draw; default every name except ``lr`` and ``img_per_s``.
        source: what the series came from, for the error message.

    Raises:
        ConfigError: nothing to draw.
    """
    wanted = {k: v for k, v in series.items() if (k[1] in names if names is not None else k[1] not in _NOT_CURVES)}
    if not wanted:
        raise ConfigError(f"{source} holds no metrics to plot yet")
    groups = [g for g in ("loss", "accuracy") if any(metric_group(n) == g for _, n in wanted)]
    fig = make_subplots(rows=len(groups), cols=1, shared_xaxes=True, subplot_titles=groups)
    for (split, name), points in sorted(wanted.items()):
        row = groups.index(metric_group(name)) + 1
        steps, values = zip(*points)
        fig.add_trace(
            go.Scatter(x=list(steps), y=list(values), mode="lines+markers", name=f"{split}/{name}"), row=row, col=1
        )
    fig.update_xaxes(title_text="step", row=len(groups), col=1)
    fig.update_layout(title="training curves", height=300 * len(groups) + 80)
    return fig
