"""Attention rollout (RAMS-Trans): per-layer and per-head CLS attention, rollout with its options, gradient rollout."""

from __future__ import annotations

import streamlit as st

from fgvc_core.app import render, traces
from fgvc_core.app.familiarity import familiarity_warning
from fgvc_core.app.guard import guarded
from fgvc_core.app.images import ImageChoice
from fgvc_core.app.map_panels import map_panel
from fgvc_core.app.models import LoadedModel
from fgvc_core.app.session import cached, timed
from fgvc_core.app.sidebar import Selection, render_sidebar
from fgvc_core.app.views import download_png, figure_download, image_with_download, input_note, slug, timing_caption
from fgvc_core.explain.rendering.figure_utils import batch_row
from fgvc_core.explain.rendering.figures import attention_layers_figure, rollout_figure
from fgvc_core.explain.rendering.overlay import figure_to_png_bytes
from fgvc_core.ops.rollout import HEAD_FUSIONS, QUERIES, gradient_rollout

QUERY_LABELS = {"cls": "CLS row (paper)", "mean": "mean of all rows (official code)"}


def layer_maps(loaded: LoadedModel, image: ImageChoice, scale: int) -> None:
    """Every layer's and head's CLS-row attention on the patch grid, rendered once per image and scale."""
    trace = traces.rams_base(loaded, image).value
    result = cached(
        ("layers_png", loaded.key, image.key, scale),
        lambda: figure_to_png_bytes(attention_layers_figure(trace, scale=scale), dpi=100),
    )
    st.image(result.value, caption=f"scale {scale + 1}: CLS → patch attention, one row per layer", width="stretch")
    download_png("Per-layer attention (PNG)", lambda: result.value, f"attention_layers_scale{scale + 1}", "dl_layers")


@st.fragment
@guarded
def rollout_panel(loaded: LoadedModel, image: ImageChoice, selection: Selection) -> None:
    """The rollout controls and both rollout maps; only this fragment reruns when a control moves."""
    base = traces.rams_base(loaded, image).value
    depth = len(base.scales[0].attentions)
    defaults = base.options
    c1, c2, c3, c4, c5 = st.columns(5)
    scale = c1.radio(
        "Scale", list(range(len(base.scales))), format_func=lambda s: f"scale {s + 1}", key="ro_scale", horizontal=True
    )
    fusion = c2.selectbox(
        "Head fusion", HEAD_FUSIONS, index=HEAD_FUSIONS.index(defaults["head_fusion"]), key="ro_fusion"
    )
    discard = c3.slider("Discard ratio", 0.0, 0.95, float(defaults["discard_ratio"]), 0.05, key="ro_discard")
    start = c4.slider("Start layer", 1, depth, int(defaults["start_layer"]) + 1, 1, key="ro_start") - 1
    query = c5.radio(
        "Query",
        QUERIES,
        index=QUERIES.index(defaults["rollout_query"]),
        format_func=QUERY_LABELS.get,
        key="ro_query",
    )
    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="ro_opacity")

    sc = base.scales[scale]
    grid = tuple(sc.rollout.shape[-2:])
    rgb = render.scale_input(base, scale, loaded.preprocess)
    # The trace computes it as its DPPM proposal does (scale 1 reuses the kept head-fused maps).
    rollout, ms = timed(lambda: base.rollout_with(scale, fusion, discard, query, start)[0])
    target, why = selection.target_class(loaded, sc.probs)
    grads = traces.attention_gradients(loaded, image, scale, target)
    attentions, gradients, _ = grads.value
    grad_map, grad_ms = timed(lambda: gradient_rollout(attentions, gradients, discard, query, start)[0].reshape(grid))

    crop = batch_row(sc.box, 0, 1)
    panel = dict(image=image, preprocess=loaded.preprocess, show_parts=selection.show_parts, opacity=opacity)
    left, right, numbers = st.columns(3)
    with left:
        st.markdown(f"**Attention rollout** · {fusion} over heads, layers {start + 1}-{depth}")
        shown, caption = map_panel(rgb, rollout, "class-agnostic", crop_xyxy=crop, **panel)
        image_with_download(shown, caption, f"rollout_scale{scale + 1}_{image.name}", "dl_rollout")
    with right:
        st.markdown(f"**Gradient rollout** · {why}")
        p = float(batch_row(sc.probs, 0, 1)[target])
        shown, caption = map_panel(
            rgb,
            grad_map,
            f"scale {scale + 1}",
            crop_xyxy=crop,
            probability=p,
            class_name=loaded.classes[target],
            **panel,
        )
        image_with_download(shown, caption, f"gradient_rollout_scale{scale + 1}_{image.name}", "dl_grad_rollout")
    name = slug(image.name)
    with numbers:
        st.metric("Rollout mean (max = 1)", f"{float(rollout.mean()):.4f}")
        st.metric("Gradient rollout mean (max = 1)", f"{float(grad_map.mean()):.4f}")
        timing_caption(
            [
                f"rollout computed in {ms:.1f} ms",
                f"gradient rollout in {grad_ms:.1f} ms (+ attention gradients {grads.caption()})",
            ]
        )
        figure_download(
            "Rollout figure (PNG)",
            lambda: rollout_figure(rgb, rollout, f"attention rollout, scale {scale + 1}, {fusion}", alpha=opacity),
            f"rollout_figure_{name}",
            key="dl_rollout_fig",
        )
        figure_download(
            "Gradient rollout figure (PNG)",
            lambda: rollout_figure(rgb, grad_map, f"gradient rollout, scale {scale + 1} ({why})", alpha=opacity),
            f"gradient_rollout_figure_{name}",
            key="dl_grad_fig",
        )
    with st.expander("Per-layer and per-head attention (CLS row)", expanded=False):
        layer_maps(loaded, image, scale)


@guarded
def main() -> None:
    selection = render_sidebar()
    st.title("Attention rollout · RAMS-Trans")
    st.caption(
        "Rollout multiplies every layer's head-fused attention (plus the residual) and reads where the CLS token's "
        "information comes from. Gradient rollout weights each attention by its gradient for the target class, so "
        "it is class-specific. The DPPM uses the plain rollout."
    )
    loaded = selection.model("rams_trans")
    image = selection.require_image()
    input_note(loaded, image)
    familiarity_warning(loaded, image, traces.rams_base(loaded, image).value.probs, selection.paths)
    rollout_panel(loaded, image, selection)


main()
