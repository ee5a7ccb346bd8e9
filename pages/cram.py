"""CRAM channel masks (CRA-SMRA): per stage I, I* and S, the strongest and weakest channels, enhanced vs suppressed.

δ and ω change the test-time prediction (the suppressed map feeds the next stage), so the sliders rerun the
network from the cached stage-3 output: stages 4-5 and the heads only. The caption prints the measured times.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from fgvc_core.app import traces
from fgvc_core.app.familiarity import familiarity_warning
from fgvc_core.app.guard import guarded
from fgvc_core.app.images import ImageChoice
from fgvc_core.app.map_panels import overlay_jpeg
from fgvc_core.app.models import LoadedModel
from fgvc_core.app.sidebar import render_sidebar
from fgvc_core.app.views import figure_download, headline, input_note, plotly, slug, timing_caption
from fgvc_core.explain.rendering.figure_cra import CHANNEL_SOURCES, channel_maps
from fgvc_core.explain.rendering.figure_utils import batch_row, display_image
from fgvc_core.explain.rendering.figures import channel_maps_figure, cram_channels_figure
from fgvc_core.explain.rendering.plots import channel_bars, heatmap, topk_bar
from fgvc_core.models.cra_smra.model import CRAM_STAGES
from fgvc_core.models.cra_smra.trace import ALL_SUPPRESSED_DELTA

# I = σ(·) lies in (0, 1), so I*_c / max I* = exp(I_c − max I) > 1/e: any δ ≤ 1/e suppresses every channel of
# every image. The slider starts at the first step above that degenerate range.
DELTA_MIN = math.ceil(ALL_SUPPRESSED_DELTA * 100) / 100
DEGENERATE_HELP = (
    f"δ ≤ 1/e ≈ {ALL_SUPPRESSED_DELTA:.3f} would suppress every channel of every image (I ∈ (0, 1), so "
    "I*_c / max I* > 1/e), which only rescales X by ω; the slider starts above it. The table says, per stage, up "
    "to which δ this image still has every channel suppressed."
)
SOURCE_LABELS = {
    "reweighted": "I_c · X_c (ranked by I)",
    "stage": "X_c (ranked by I)",
    "enhanced": "X_e after the Conv_layer (ranked by max)",
}


def stage_table(trace) -> list[dict]:
    """Per stage: channels, suppressed channels, the δ·max I* line, the mean of S, and below which δ all go."""
    rows = []
    for st_ in trace.stages:
        i_star = batch_row(st_.importance_softmax, 0, 1)
        suppressed, channels = st_.suppressed_count(0)
        rows.append(
            {
                "stage": st_.stage,
                "channels": channels,
                "suppressed": suppressed,
                "δ·max I*": f"{trace.delta * float(i_star.max()):.5f}",
                "mean S": f"{float(batch_row(st_.suppression, 0, 1).mean()):.4f}",
                "all suppressed for δ ≤": f"{st_.all_suppressed_delta(0):.3f}",
            }
        )
    return rows


def suppression_line(trace) -> str:
    """``"stage 3: 5 of 64 channels suppressed · …"``, with a warning mark where every channel is."""
    parts = []
    for st_ in trace.stages:
        n, channels = st_.suppressed_count(0)
        parts.append(f"stage {st_.stage}: {n} of {channels} channels suppressed" + (" (all)" if n == channels else ""))
    return " · ".join(parts)


def channel_figure(stage_trace, sort: bool, top_k: int, delta: float, omega: float) -> go.Figure:
    """The I, I*, S bars of one stage, with S also as dots on a fixed 0-1 axis (visible at ω = 0)."""
    return channel_bars(
        stage_trace.importance,
        stage_trace.importance_softmax,
        stage_trace.suppression,
        stage_trace.suppressed_channels,
        sort=sort,
        top_k=top_k,
        delta=delta,
        omega=omega,
    )


def feature_means(trace, stage: int, image: ImageChoice) -> None:
    """X, I⊗X (enhanced) and S⊗X (suppressed, the next stage's input): channel means on one colour scale."""
    st_ = trace.stage(stage)
    maps = {
        "stage output X": batch_row(st_.stage_mean, 0, 2),
        "enhanced I ⊗ X": batch_row(st_.reweighted_mean, 0, 2),
        "suppressed S ⊗ X (next stage's input)": batch_row(st_.suppressed_mean, 0, 2),
    }
    low = min(float(m.min()) for m in maps.values())
    high = max(float(m.max()) for m in maps.values())
    columns = st.columns(3)
    for column, (title, m) in zip(columns, maps.items()):
        with column:
            plotly(
                heatmap(m, f"{title}<br>mean {float(m.mean()):.4f}", zmin=low, zmax=high),
                f"cram_stage{stage}_{slug(title)}_{image.name}",
                key=f"means_{stage}_{slug(title)}",
            )


def channel_tiles(trace, stage: int, k: int, source: str, rgb) -> None:
    """The top-``k`` and bottom-``k`` channel maps over the input, on one colour scale for all ``2k``.

    Drawn as numpy overlays (about 1 ms a tile) instead of the matplotlib figure (about 600 ms on this CPU), so a δ
    step shows its maps at once; the figure is still the PNG download.
    """
    maps, score = channel_maps(trace, stage, 0, source)
    ranked = np.argsort(-score, kind="stable")
    low, high = float(maps.min()), float(maps.max())
    st_ = trace.stage(stage)
    bad = source == "enhanced" or st_.suppressed_channels is None
    suppressed = None if bad else batch_row(st_.suppressed_channels, 0, 1) > 0.5
    st.caption(f"one colour scale for all {2 * k} maps: {low:.4f} … {high:.4f}")
    for name, channels in (("top", ranked[:k]), ("bottom", ranked[-k:])):
        for column, c in zip(st.columns(k), channels):
            mark = " (supp.)" if suppressed is not None and suppressed[c] else ""
            column.image(
                overlay_jpeg(rgb, maps[c], low, high, alpha=0.6),
                caption=f"{name} c{c}: {float(score[c]):.3f}{mark}",
                width="stretch",
            )


@st.fragment
@guarded
def cram_panel(loaded: LoadedModel, image: ImageChoice) -> None:
    """δ/ω sliders and everything they change; only this fragment reruns when they move."""
    config = loaded.model.config
    if not loaded.model.uses_cram:
        st.warning(f"This checkpoint's variant is {config['variant']!r}: it has no CRAM, so δ and ω do nothing.")
    left, right = st.columns(2)
    trained = float(config["delta"])
    if trained <= ALL_SUPPRESSED_DELTA:
        st.warning(
            f"This checkpoint was trained with δ = {trained:g} ≤ 1/e ≈ {ALL_SUPPRESSED_DELTA:.3f}: every channel was "
            "suppressed in training (S = ω everywhere). The slider starts above that range."
        )
    delta = left.slider(
        "δ: suppress channels with I* ≥ δ · max I*",
        DELTA_MIN,
        1.0,
        min(max(trained, DELTA_MIN), 1.0),
        0.01,
        key="cram_delta",
        help=DEGENERATE_HELP,
    )
    omega = right.slider("ω: factor of a suppressed channel", 0.0, 1.0, float(config["omega"]), 0.05, key="cram_omega")
    base = traces.cra_base(loaded, image)
    result = traces.cra_trace(loaded, image, delta, omega)
    trace = result.value
    timing_caption(
        [
            f"δ/ω update: {result.caption()} (stages 4-5 and heads from the cached stage-3 output)",
            f"full trace of this image: {base.ms:.1f} ms",
        ]
    )
    if trace.delta is None:
        return
    top, table = st.columns([3, 2])
    with top:
        plotly(
            topk_bar(trace.head_probs, loaded.classes, k=5, combined=trace.probs),
            f"cram_prediction_{image.name}_delta{delta:g}",
            key="cram_top5",
        )
    with table:
        headline("Combined prediction", trace.probs, loaded.classes)
        st.dataframe(stage_table(trace), hide_index=True, width="stretch")
        st.caption(suppression_line(trace))
    stage = st.radio("Stage", CRAM_STAGES, format_func=lambda s: f"stage {s}", horizontal=True, key="cram_stage")
    st_ = trace.stage(stage)
    c1, c2 = st.columns([1, 3])
    sort = c1.toggle("Sort by I", value=True, key="cram_sort")
    top_k = c2.slider(
        "Channels shown (highest I)",
        8,
        int(st_.importance.shape[-1]),
        min(64, st_.importance.shape[-1]),
        key=f"cram_topk_{stage}",
    )
    plotly(
        channel_figure(st_, sort, top_k, trace.delta, omega),
        f"cram_stage{stage}_channels_{image.name}",
        key=f"bars_{stage}",
    )
    name = slug(image.name)
    figure_download(
        "I, I*, S bars (PNG)",
        lambda: cram_channels_figure(trace, stage, top_k=top_k, sort=sort),
        f"cram_stage{stage}_bars_{name}_delta{delta:g}",
        key="dl_bars",
    )

    st.markdown("**Strongest and weakest channels** (one colour scale; channels marked *supp.* are suppressed)")
    c1, c2 = st.columns(2)
    k = c1.slider("Channels per row", 2, 8, 4, key="cram_k")
    source = c2.radio("Maps of", CHANNEL_SOURCES, format_func=SOURCE_LABELS.get, horizontal=True, key="cram_source")
    channel_tiles(trace, stage, k, source, display_image(loaded.input_tensor(image.image)[0], loaded.preprocess))
    figure_download(
        "Channel maps (PNG)",
        lambda: channel_maps_figure(trace, stage, k=k, source=source),
        f"cram_stage{stage}_channel_maps_{name}",
        key="dl_maps",
    )
    st.markdown("**Enhanced vs suppressed features** (channel means)")
    feature_means(trace, stage, image)


@guarded
def main() -> None:
    selection = render_sidebar()
    st.title("CRAM channel masks · CRA-SMRA")
    st.caption(
        "After stages 3, 4 and 5, CRAM scores every channel (I), softmaxes the scores (I*) and multiplies the "
        "channels with I* ≥ δ · max I* by ω (S). The enhanced map I ⊗ X feeds the stage's classifier; the "
        "suppressed map S ⊗ X feeds the next stage, so later stages must find other evidence."
    )
    loaded = selection.model("cra_smra")
    image = selection.require_image()
    input_note(loaded, image)
    familiarity_warning(loaded, image, traces.cra_base(loaded, image).value.probs, selection.paths)
    cram_panel(loaded, image)


main()
