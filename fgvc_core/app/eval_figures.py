"""The evaluation page's interactive figures: per-class accuracy bars and a clickable confusion matrix.

Plotly's heatmap trace sends no selection events to Streamlit (streamlit/streamlit#8760, #15042), so the matrix
is a heatmap for the colours with an invisible square marker over every cell; a click selects that marker, and
its ``customdata`` names the cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from fgvc_core.explain.rendering.figure_utils import BAR_COLOR

SORTS = ("class order", "worst first", "best first")


def sort_order(accuracy: np.ndarray, how: str) -> list[int]:
    """Class indices in the order ``how`` (one of ``SORTS``) asks; classes without images go last."""
    acc = np.asarray(accuracy, dtype=np.float64)
    indices = list(range(len(acc)))
    if how == "class order":
        return indices
    sign = 1.0 if how == "worst first" else -1.0
    return sorted(indices, key=lambda k: (np.isnan(acc[k]), sign * (0.0 if np.isnan(acc[k]) else acc[k]), k))


def per_class_bar(accuracy: np.ndarray, counts: np.ndarray, classes: Sequence[str], how: str) -> go.Figure:
    """Per-class accuracy (recall), one bar per class in the order ``how``; hover shows the image count."""
    order = sort_order(accuracy, how)
    acc = np.asarray(accuracy, dtype=np.float64)
    fig = go.Figure(
        go.Bar(
            x=[classes[k] for k in order],
            y=[None if np.isnan(acc[k]) else 100 * acc[k] for k in order],
            customdata=[int(counts[k]) for k in order],
            marker_color=BAR_COLOR,
            hovertemplate="%{x}<br>%{y:.1f}% of %{customdata} images<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Per-class accuracy ({how})",
        yaxis={"title": "accuracy (%)", "range": [0, 100]},
        xaxis={"type": "category", "tickangle": -45},
        margin={"l": 40, "r": 10, "t": 40, "b": 10},
        height=360,
    )
    return fig


def confusion_figure(matrix: np.ndarray, classes: Sequence[str]) -> go.Figure:
    """Counts per (true, predicted) cell; click a cell to select it (``customdata = [true, predicted]``)."""
    matrix = np.asarray(matrix)
    k = len(classes)
    names = list(classes)
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=names,
            y=names,
            colorscale="Blues",
            hovertemplate="true %{y}<br>predicted %{x}<br>%{z} images<extra></extra>",
            colorbar={"title": "images"},
        )
    )
    cells: list[Any] = [(t, p) for t in range(k) for p in range(k)]
    fig.add_trace(
        go.Scatter(
            x=[names[p] for _, p in cells],
            y=[names[t] for t, _ in cells],
            customdata=[[t, p] for t, p in cells],
            mode="markers",
            marker={"symbol": "square", "size": max(6, min(40, 480 // max(k, 1))), "color": "rgba(0,0,0,0)"},
            hovertemplate="true %{y}<br>predicted %{x}<extra>click to list</extra>",
            showlegend=False,
        )
    )
    fig.update_layout(
        title="Confusion matrix (rows: true class, columns: predicted); click a cell",
        xaxis={"title": "predicted", "type": "category", "tickangle": -45},
        yaxis={"title": "true", "type": "category", "autorange": "reversed"},
        clickmode="event+select",
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        height=max(360, min(900, 40 * k + 160)),
    )
    return fig


def selected_cell(event: Any) -> tuple[int, int] | None:
    """The (true, predicted) cell a chart selection event points at, or None."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for point in points or []:
        data = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(data, (list, tuple)) and len(data) == 2:
            return int(data[0]), int(data[1])
    return None
