"""Per-stage Grad-CAM (CRA-SMRA stages 3, 4, 5 side by side), RAMS-Trans Grad-CAM on its last block, SMRAM maps."""

from __future__ import annotations

import streamlit as st

from fgvc_core.app import render, traces
from fgvc_core.app.cam_views import stage_cam_row
from fgvc_core.app.familiarity import familiarity_warning
from fgvc_core.app.guard import guarded, page_guard
from fgvc_core.app.images import ImageChoice
from fgvc_core.app.map_panels import fixed_scale_overlay, map_panel
from fgvc_core.app.models import LoadedModel
from fgvc_core.app.sidebar import Selection, render_sidebar
from fgvc_core.app.views import figure_download, image_with_download, input_note, plotly, slug, timing_caption
from fgvc_core.explain.attribution.cam import CAM_METHODS
from fgvc_core.explain.attribution.methods import CAM_LABELS, CAM_TABLE
from fgvc_core.explain.attribution.vit_cam import CAM_METHODS as VIT_CAM_METHODS
from fgvc_core.explain.rendering.figure_utils import batch_row, display_image
from fgvc_core.explain.rendering.figures import rollout_figure, smram_figure
from fgvc_core.explain.rendering.plots import heatmap
from fgvc_core.explain.scoring.map_readout import shared_scale, top_region_iou

MANY_PASS = {name: m.cost for name, m in CAM_TABLE.items() if m.cost}
OVERLAP_FRACTION = 0.2


def stage_overlap(cams: dict) -> dict[str, float]:
    """IoU of the top 20 % pixels of every pair of stage CAMs: do the stages look at different parts?"""
    stages = list(cams)
    return {
        f"IoU stage {a} / {b}": top_region_iou(cams[a], cams[b], OVERLAP_FRACTION)
        for i, a in enumerate(stages)
        for b in stages[i + 1 :]
    }


def smram_maps(trace, image: ImageChoice, rgb, cams: dict | None = None) -> None:
    """SMRAM's spatial softmax per stage and their cross-stage max (CCMP) over the input on one colour scale,
    h and L_div, and beside them the overlap of the stage CAMs themselves (the same question asked of the maps)."""
    if trace.smram_maps is None:
        st.info(f"Variant {trace.variant!r} has no SMRAM.")
        return
    maps = batch_row(trace.smram_maps, 0, 3)
    ccmp = batch_row(trace.ccmp, 0, 2)
    h = float(trace.ccmp_spread[0])
    l_div = float(trace.l_div_per_image[0])
    overlap = stage_overlap(cams) if cams else {}
    metrics_row = st.columns(2 + len(overlap))
    metrics_row[0].metric("h = Σ CCMP (1: same place … 3: disjoint)", f"{h:.4f}")
    metrics_row[1].metric("L_div = 1 − h/3", f"{l_div:.4f}")
    for column, (label, iou) in zip(metrics_row[2:], overlap.items()):
        column.metric(label, f"{iou:.3f}", help=f"top {OVERLAP_FRACTION:.0%} pixels of the two stage CAMs; 0: disjoint")
    stages = [s.stage for s in trace.stages]
    low, high = shared_scale({"maps": maps, "ccmp": ccmp})
    st.caption(f"All four maps on one colour scale, {low:.4f} … {high:.4f} (a softmax over the grid sums to 1).")
    columns = st.columns(len(maps) + 1)
    for column, stage, m in zip(columns, stages, maps):
        with column:
            st.image(
                fixed_scale_overlay(rgb, m, low, high),
                caption=f"stage {stage} map (max {float(m.max()):.4f})",
                width="stretch",
            )
    with columns[-1]:
        st.image(fixed_scale_overlay(rgb, ccmp, low, high), caption="CCMP: max over stages", width="stretch")
    with st.expander("The maps as interactive heat maps"):
        grid = st.columns(len(maps) + 1)
        for column, stage, m in zip(grid, stages, maps):
            with column:
                plotly(
                    heatmap(m, f"stage {stage} map", zmin=low, zmax=high),
                    f"smram_stage{stage}_{image.name}",
                    key=f"smram_{stage}",
                )
        with grid[-1]:
            plotly(heatmap(ccmp, "CCMP", zmin=low, zmax=high), f"smram_ccmp_{image.name}", key="smram_ccmp")
    figure_download("SMRAM maps (PNG)", lambda: smram_figure(trace), f"smram_{slug(image.name)}", key="dl_smram")


def vit_cam_panel(selection: Selection, image: ImageChoice, method: str, opacity: float) -> None:
    """pytorch-grad-cam on RAMS-Trans's last block (scale 1), same target rule as the stages."""
    loaded = selection.model("rams_trans")
    base = traces.rams_base(loaded, image).value
    target, why = selection.target_class(loaded, base.scales[0].probs)
    used = method if method in VIT_CAM_METHODS else "gradcam"
    if used != method:
        st.caption(f"{CAM_LABELS[method].split(' (')[0]} is not offered for the ViT; showing Grad-CAM.")
    result = traces.vit_cam(loaded, image, target, used)
    rgb = render.scale_input(base, 0, loaded.preprocess)
    cam = result.value.numpy()
    left, right = st.columns([1, 2])
    with left:
        shown, caption = map_panel(
            rgb,
            cam,
            "RAMS-Trans last block",
            image,
            loaded.preprocess,
            show_parts=selection.show_parts,
            opacity=opacity,
            probability=float(batch_row(base.probs, 0, 1)[target]),
            class_name=loaded.classes[target],
        )
        image_with_download(shown, caption, f"vit_{used}_{image.name}", "dl_vit_cam")
    with right:
        st.markdown(f"**RAMS-Trans {CAM_LABELS[used].split(' (')[0]}**, scale 1, last block's norm1 tokens · {why}")
        timing_caption([result.caption("ViT CAM computed")])
        figure_download(
            "ViT CAM figure (PNG)",
            lambda: rollout_figure(rgb, cam, f"RAMS-Trans {used}, last block ({why})", alpha=opacity),
            f"vit_{used}_figure_{slug(image.name)}",
            key="dl_vit_fig",
        )


@st.fragment
@guarded
def cam_panel(selection: Selection, loaded: LoadedModel, image: ImageChoice) -> None:
    """Method, opacity and δ; only this fragment reruns when they move."""
    methods = list(CAM_METHODS)
    c1, c2, c3 = st.columns(3)
    method = c1.selectbox("CAM method (pytorch-grad-cam)", methods, format_func=CAM_LABELS.get, key="cam_method")
    opacity = c2.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="cam_opacity")
    delta = c3.slider("δ", 0.05, 1.0, float(loaded.model.config["delta"]), 0.01, key="cam_delta")
    shared = st.toggle(
        "One colour scale for all stages",
        key="cam_shared",
        help="Off: each stage's map is stretched to [0, 1] on its own (pytorch-grad-cam's default), so every stage "
        "peaks at 1. On: the raw maps over their common max, so a stage with a weak signal looks weak.",
    )
    trace = traces.cra_trace(loaded, image, delta, None).value
    target, why = selection.target_class(loaded, trace.probs)
    st.markdown(f"**CRA-SMRA stages 3, 4, 5** · {why} · δ = {delta:g}")
    probability = float(batch_row(trace.probs, 0, 1)[target])
    passes = 1 + sum(int(s.importance.shape[-1]) for s in trace.stages) if method in MANY_PASS else 0
    if passes:
        st.caption(f"{CAM_LABELS[method].split(' (')[0]} runs {MANY_PASS[method]}: about {passes} passes here.")
    with st.spinner(f"Computing {CAM_LABELS[method].split(' (')[0]}…"):
        result = stage_cam_row(
            loaded,
            image,
            target,
            method,
            delta,
            opacity,
            key="cam",
            parts=selection.show_parts,
            probability=probability,
            normalise="shared" if shared else "per_map",
        )
    if shared:
        st.caption("One colour scale: each peak is that stage's raw maximum over the strongest stage's.")
    cost = f"{passes} forward passes" if passes else "one forward and one backward for all three stages"
    timing_caption([f"stage CAMs {result.caption()} ({cost})"])
    st.subheader("RAMS-Trans, same image")
    with page_guard():
        vit_cam_panel(selection, image, method, opacity)
    st.subheader("SMRAM maps (stages 3, 4, 5) and the stage CAMs' overlap")
    smram_maps(trace, image, display_image(loaded.input_tensor(image.image)[0], loaded.preprocess), result.value)


@guarded
def main() -> None:
    selection = render_sidebar()
    st.title("Per-stage Grad-CAM")
    st.caption(
        "Where each CRA-SMRA stage looks for the target class (the paper's Figs. 4-6): CRAM suppresses the channels "
        "an earlier stage relied on, so later stages should move to other parts. FinerCAM compares the target with "
        "its most similar classes, which suits fine-grained categories."
    )
    loaded = selection.model("cra_smra")
    image = selection.require_image()
    input_note(loaded, image)
    familiarity_warning(loaded, image, traces.cra_base(loaded, image).value.probs, selection.paths)
    cam_panel(selection, loaded, image)


main()
