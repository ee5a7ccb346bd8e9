"""Overview: the image, both models' top-5 predictions per scale/stage and combined, and what each model is."""

from __future__ import annotations

import numpy as np
import streamlit as st

from fgvc_core.app import render, traces
from fgvc_core.app.familiarity import familiarity_warning
from fgvc_core.app.guard import guarded, page_guard
from fgvc_core.app.settings import MODEL_KINDS, MODEL_TITLES
from fgvc_core.app.sidebar import Selection, render_sidebar
from fgvc_core.app.views import figure_download, headline, input_note, model_facts, plotly, prediction_line, slug
from fgvc_core.data.transforms import input_box_to_original, kept_fraction
from fgvc_core.explain.rendering.figure_utils import batch_row, display_image, format_prob
from fgvc_core.explain.rendering.figures import prediction_figure
from fgvc_core.explain.rendering.overlay import draw_boxes, overlay_heatmap
from fgvc_core.explain.rendering.plots import topk_bar
from fgvc_core.explain.scoring.agreement import map_agreement


def model_column(selection: Selection, kind: str) -> None:
    st.subheader(MODEL_TITLES[kind])
    loaded = selection.model(kind)
    image = selection.require_image()
    result = traces.base_trace(loaded, image)
    trace = result.value
    classes = loaded.classes
    headline("Combined prediction", trace.probs, classes)
    familiarity_warning(loaded, image, trace.probs, selection.paths)
    input_note(loaded, image)
    if image.label_name is not None:
        correct = classes[int(trace.probs.argmax())] == image.label_name
        st.caption(f"True class: {image.label_name} ({'correct' if correct else 'wrong'})")
    heads = dict(trace.head_probs)  # every Trace: per head (scales or stages)
    plotly(topk_bar(heads, classes, k=5, combined=trace.probs), f"{kind}_top5_{image.name}", key=f"top5_{kind}")
    st.caption(
        "Per head: "
        + " · ".join(f"{name} → {prediction_line(p, classes)}" for name, p in heads.items())
        + f" · {result.caption('traced')}"
    )
    figure_download(
        "Prediction (PNG)",
        lambda: prediction_figure(trace.probs, classes, k=5, title=f"{MODEL_TITLES[kind]} combined"),
        f"{kind}_prediction_{slug(image.name)}",
        key=f"dl_pred_{kind}",
    )
    model_facts(loaded)


TOP_FRACTION = 0.2


def same_frame(rams, cra, image) -> bool:
    """Whether both checkpoints show the network the same part of ``image`` (then their maps share a frame)."""
    a, b = rams.preprocess, cra.preprocess
    size = image.image.size
    return a.get("resize_mode") == b.get("resize_mode") and abs(kept_fraction(size, a) - kept_fraction(size, b)) < 1e-6


def both_models(selection: Selection) -> None:
    """RAMS-Trans rollout and CRA-SMRA stage-5 Grad-CAM on the same image, with how much the two maps agree."""
    image = selection.require_image()
    rams, cra = selection.model("rams_trans"), selection.model("cra_smra")
    rams_trace = traces.rams_base(rams, image).value
    rollout = batch_row(rams_trace.scales[0].rollout, 0, 2)
    cra_probs = traces.cra_base(cra, image).value.probs
    target, why = selection.target_class(cra, cra_probs)
    cam = traces.stage_cams(cra, image, target, "gradcam").value[5]
    rams_rgb = render.scale_input(rams_trace, 0, rams.preprocess)
    cra_rgb = display_image(cra.input_tensor(image.image)[0], cra.preprocess)
    left, right, numbers = st.columns([2, 2, 1])
    with left:
        st.image(overlay_heatmap(rams_rgb, rollout), caption="RAMS-Trans attention rollout (scale 1)", width="stretch")
        st.caption(f"predicts {prediction_line(rams_trace.probs, rams.classes)} · the rollout is class-agnostic")
    with right:
        st.image(overlay_heatmap(cra_rgb, cam), caption="CRA-SMRA stage-5 Grad-CAM", width="stretch")
        p = float(batch_row(cra_probs, 0, 1)[target])
        st.caption(f"predicts {prediction_line(cra_probs, cra.classes)} · map of {why} ({format_prob(p)})")
    agreement = map_agreement(rollout, cam, TOP_FRACTION)
    with numbers:
        st.metric(f"IoU of the top {TOP_FRACTION:.0%}", f"{agreement.iou:.3f}", help="1: the same cells, 0: disjoint")
        rho = "n/a (a constant map)" if agreement.spearman != agreement.spearman else f"{agreement.spearman:+.3f}"
        st.metric("Spearman ρ", rho, help="rank correlation of all cells: +1 same order, 0 unrelated")
        st.caption(f"both maps resampled to {agreement.grid[0]}×{agreement.grid[1]} over each network's input")
        if not same_frame(rams, cra, image):
            st.warning("The two checkpoints crop this image differently, so the maps do not cover the same area.")


CROP_COLOURS = {(255, 64, 64): "red", (64, 160, 255): "blue", (80, 200, 80): "green"}  # in MODEL_KINDS order


def crop_legend(selection: Selection) -> str:
    """``boxes: what RAMS-Trans (red) and CRA-SMRA (blue) see``, for the models whose crop is drawn."""
    named = [f"{MODEL_TITLES[k]} ({c})" for k, c in zip(MODEL_KINDS, CROP_COLOURS.values()) if selection.has(k)]
    if not named:
        return "no checkpoint chosen"
    return "boxes: what " + (" and ".join(named) if len(named) < 3 else ", ".join(named)) + " see"


def input_crops(selection: Selection, image) -> object:
    """The upload with the part each chosen checkpoint's test transform keeps (its centre crop) drawn on it."""
    boxes, colors = [], []
    for kind, color in zip(MODEL_KINDS, CROP_COLOURS):
        if not selection.has(kind):
            continue
        with page_guard():
            pp = selection.model(kind).preprocess
            boxes.append(input_box_to_original((0, 0, pp["img_size"], pp["img_size"]), image.image.size, pp))
            colors.append(color)
    if not boxes:
        return image.image
    rgb = display_image(image.image)
    return draw_boxes(rgb, np.asarray(boxes), colors=colors, width=max(2, min(rgb.shape[:2]) // 100))


@guarded
def main() -> None:
    selection = render_sidebar()
    st.title("FGVC Explorer")
    st.caption(
        "Two fine-grained classifiers on one image: RAMS-Trans (a ViT that zooms where its attention points) and "
        "CRA-SMRA (a ResNet that re-weights and suppresses channels after stages 3-5). Pick the models, the image "
        "and the class to explain in the sidebar; the pages on the left open each model up."
    )
    image = selection.require_image()
    left, right = st.columns([1, 3])
    with left:
        st.image(
            input_crops(selection, image),
            caption=f"{image.name} · {image.image.size[0]}×{image.image.size[1]} px · {crop_legend(selection)}",
            width="stretch",
        )
        if image.label_name is not None:
            st.caption(f"True class: **{image.label_name}**")
        target = selection.target or "each model's prediction"
        st.caption(f"Maps explain: {target}.")
    with right:
        # One column per model with a checkpoint chosen (every model while none is: each then says what is missing).
        kinds = [kind for kind in MODEL_KINDS if selection.has(kind)] or list(MODEL_KINDS)
        columns = st.columns(len(kinds))
        for column, kind in zip(columns, kinds):
            with column, page_guard():
                model_column(selection, kind)
    st.subheader("Both models on this image")
    with page_guard():
        both_models(selection)


main()
