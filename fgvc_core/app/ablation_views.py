"""The Tune page's retrained γ and δ sweeps: a ``train.ablate`` grid's runs as mean ± sd error bars over seeds.

Only measured runs are drawn. Without a table the section says so and gives the command that makes one; with one
seed per value there is no sd, and the section says that too instead of drawing a bar of zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
import streamlit as st

from fgvc_core.app.ablation_tables import (
    CHART_METRICS,
    AblationTable,
    SweepPoints,
    grid_tables,
    read_runs_table,
    sweep_points,
    tables_folder,
    typed_table,
)
from fgvc_core.app.settings import AppPaths, display_path
from fgvc_core.app.views import plotly

TYPED = "__typed__"
DEFAULT_METRICS = ("test_top1", "pointing_game", "pointing_centre")
NO_TABLE = (
    "No multi-seed table of the `{grid}` grid yet: no `ablate/{grid}/runs.csv` under the runs root and no "
    "`{grid}_runs.csv` in `{tables}`. Produce it with `python -m train.ablate --grid {grid} --seeds 0 1 2 --jobs 2` "
    "(docs/ablations.md); this tab then draws test top-1 and the pointing game against {symbol}, mean ± sd over "
    "the seeds. Nothing is drawn before a run has finished."
)


def _seed_text(counts: Sequence[int]) -> str:
    low, high = min(counts), max(counts)
    return f"{low} seed{'s' if low != 1 else ''}" if low == high else f"{low}-{high} seeds"


def error_bar_figure(series: Sequence[SweepPoints], symbol: str, title: str) -> go.Figure:
    """Per metric: the mean over seeds at each value with a ±1 sample-sd bar (none where one run), each seed as a dot.

    Every point's text is its run count ``n = k``, and the title says the seeds per point.
    """
    fig = go.Figure()
    counts: list[int] = []
    for points in series:
        label = CHART_METRICS.get(points.metric, points.metric)
        counts += points.counts
        fig.add_trace(
            go.Scatter(
                x=points.values,
                y=points.means,
                error_y={"type": "data", "array": [None if math.isnan(s) else s for s in points.sds], "visible": True},
                mode="lines+markers+text",
                text=[f"n = {n}" for n in points.counts],
                textposition="top right",
                name=f"{label} (mean ± sd)",
                hovertemplate=f"{symbol} = %{{x}}<br>{label}: %{{y:.4f}}<extra>%{{text}}</extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[v for v, values in zip(points.values, points.per_seed) for _ in values],
                y=[y for values in points.per_seed for y in values],
                customdata=[s for seeds in points.seeds for s in seeds],
                mode="markers",
                marker={"size": 5, "opacity": 0.45},
                name=f"{label}: each seed",
                hovertemplate=f"{symbol} = %{{x}}, seed %{{customdata}}: %{{y:.4f}}<extra></extra>",
            )
        )
    seeds = _seed_text(counts) if counts else "no runs"
    fig.update_layout(
        title=f"{title}: mean ± sd over {seeds} per point",
        xaxis_title=symbol,
        yaxis={"title": "fraction", "tickformat": ".0%"},
        height=420,
        margin={"l": 40, "r": 20, "t": 60, "b": 40},
    )
    return fig


def _choose_table(grid: str, symbol: str, paths: AppPaths, key: str) -> AblationTable | None:
    found = grid_tables(grid, paths)
    by_path = {str(path): source for path, source in found}
    if not found:
        # Plain text, not st.info: the tab's own content while no grid has run, not an alert about the page.
        st.markdown(NO_TABLE.format(grid=grid, symbol=symbol, tables=display_path(tables_folder())))
    choice = st.selectbox(
        "Runs table",
        [*by_path, TYPED],
        format_func=lambda p: "Type a grid folder under the runs root…" if p == TYPED else display_path(p),
        key=f"{key}_table",
    )
    if choice != TYPED:
        return read_runs_table(choice, by_path[choice])
    text = st.text_input("Grid folder (holding runs.csv)", placeholder=f"runs/ablate/{grid}", key=f"{key}_path")
    return typed_table(text, paths) if text.strip() else None


def retrained_section(paths: AppPaths, grid: str, parameter: str, symbol: str, paper: str, key: str) -> None:
    """A grid's retrained sweep: the table picker, the error-bar chart and the per-value numbers."""
    st.markdown(f"**{symbol} retrained, several seeds ({paper})**")
    table = _choose_table(grid, symbol, paths, key)
    if table is None:
        return
    available = [m for m in CHART_METRICS if any(not math.isnan(r[m]) for r in table.records)]
    chosen = st.multiselect(
        "Metrics",
        available,
        default=[m for m in DEFAULT_METRICS if m in available],
        format_func=CHART_METRICS.get,
        key=f"{key}_metrics",
    )
    series = [sweep_points(table, parameter, m) for m in chosen]
    if not series:
        st.caption("Choose a metric to draw.")
        return
    plotly(error_bar_figure(series, symbol, f"{grid}: metrics vs {symbol}"), f"{grid}_error_bars", key=f"{key}_plot")
    first = series[0]
    st.caption(
        f"`{table.label}` · {sum(first.counts)} finished runs · bars are ±1 sample sd (n − 1) over the seeds of each "
        f"{symbol}; dots are the single runs. Seeds per {symbol}: "
        + ", ".join(f"{v:g}: {' '.join(map(str, s)) or '—'}" for v, s in zip(first.values, first.seeds))
    )
    if first.skipped:
        st.caption(f"Variants not named {parameter}<value>, left out: {', '.join(first.skipped)}.")
    single = [f"{v:g}" for v, n in zip(first.values, first.counts) if n < 2]
    if single:
        st.warning(
            f"{symbol} = {', '.join(single)}: fewer than two seeds, so no sd; a difference there is not measured."
        )
    rows = []
    for i, value in enumerate(first.values):
        row: dict[str, object] = {symbol: value, "runs": first.counts[i], "seeds": " ".join(map(str, first.seeds[i]))}
        for points in series:
            label = CHART_METRICS[points.metric]
            row[f"{label} mean"] = points.means[i]
            row[f"{label} sd"] = points.sds[i]
        rows.append(row)
    st.dataframe(rows, hide_index=True, width="stretch")
