"""DPPM scales (RAMS-Trans): rollout → thresholded mask → largest component → box → zoomed crop, scale by scale.

The threshold α slider reruns only the DPPM from the scale-1 attention already computed (``trace(cache=...)``):
one rollout, the box and the later scales.
"""

from __future__ import annotations

import streamlit as st

from fgvc_core.app import render, traces
from fgvc_core.app.familiarity import familiarity_warning
from fgvc_core.app.guard import guarded
from fgvc_core.app.images import ImageChoice
from fgvc_core.app.map_panels import draw_ground_truth, ground_truth_frame, map_panel
from fgvc_core.app.models import LoadedModel
from fgvc_core.app.sidebar import render_sidebar
from fgvc_core.app.views import (
    figure_download,
    headline,
    image_with_download,
    input_note,
    slug,
    timing_caption,
    top_classes,
)
from fgvc_core.explain.rendering.figure_utils import batch_row, format_prob
from fgvc_core.explain.rendering.figures import dppm_figure

ALPHA_RANGE = (0.5, 3.0)


def scale_step(trace, scale: int, loaded: LoadedModel, image: ImageChoice, alpha: float, parts: bool = False) -> None:
    """One scale: what it saw, the four DPPM steps, the numbers, and the crop the next scale sees."""
    sc = trace.scales[scale]
    views = render.dppm_views(trace, scale, loaded.preprocess)
    mask, component = batch_row(sc.mask, 0, 2) > 0.5, batch_row(sc.component, 0, 2) > 0.5
    box = batch_row(sc.proposal_box, 0, 1)
    rgb = render.scale_input(trace, scale, loaded.preprocess)
    crop = batch_row(sc.box, 0, 1)
    _, rollout_caption = map_panel(
        rgb, batch_row(sc.rollout, 0, 2), "1 · attention rollout", image, loaded.preprocess, show_parts=parts,
        crop_xyxy=crop,
    )  # fmt: skip
    titles = {
        "rollout": rollout_caption,
        "mask": f"2 · mask: rollout > {alpha:g} × mean",
        "component": "3 · largest 8-connected component",
        "box": f"4 · its box {render.box_text(box)}",
    }
    truth = ground_truth_frame(image, loaded.preprocess, crop, rgb.shape[0]) if parts else None
    columns = st.columns(4)
    for column, (name, title) in zip(columns, titles.items()):
        with column:
            shown = views[name] if truth is None else draw_ground_truth(views[name], truth)
            image_with_download(shown, title, f"dppm_scale{scale + 1}_{name}_{image.name}", f"dl_{name}_{scale}")
    if not mask.any():
        st.caption(f"No patch scores above {alpha:g} × mean: the DPPM falls back to the whole image (box = input).")
    elif whole_image(box, rgb.shape[:2]):
        st.caption(
            f"The mask covers the whole grid at α = {alpha:g}: the box is this scale's whole input, so the zoom is the "
            "whole image (the next scale sees the same picture)."
        )
    stats = st.columns(4)
    stats[0].metric("Mask cells", f"{int(mask.sum())}/{mask.size}")
    stats[1].metric("Kept cells", f"{int(component.sum())}")
    stats[2].metric("Box size (this scale's px)", f"{box[2] - box[0]:.0f}×{box[3] - box[1]:.0f}")
    with stats[3]:
        headline(f"Scale {scale + 1} top-1", sc.probs, loaded.classes)


def whole_image(box, frame_hw: tuple[int, int]) -> bool:
    """Whether an ``xyxy`` box spans the whole frame (to the pixel): then the 'zoom' shows everything again."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    return x0 <= 0.5 and y0 <= 0.5 and x1 >= frame_hw[1] - 0.5 and y1 >= frame_hw[0] - 0.5


def zoom_result(trace, scale: int, loaded: LoadedModel, image: ImageChoice) -> None:
    """The crop scale ``scale + 1`` classifies, where it lies on the uploaded image, and its prediction."""
    nxt = trace.scales[scale + 1]
    st.markdown(f"**Zoom: scale {scale + 2} sees this crop, resized to the full input**")
    left, middle, right = st.columns([1, 1, 1])
    with left:
        image_with_download(
            render.scale_input(trace, scale + 1, loaded.preprocess),
            f"scale {scale + 2} input (box {render.box_text(batch_row(nxt.box, 0, 1))} on the network input)",
            f"dppm_scale{scale + 2}_crop_{image.name}",
            f"dl_crop_{scale}",
        )
    with middle:
        if nxt.box_original is not None:
            original = batch_row(nxt.box_original, 0, 1)
            image_with_download(
                render.original_with_box(image.image, original),
                f"on your image: {render.box_text(original)} px",
                f"dppm_scale{scale + 2}_original_{image.name}",
                f"dl_orig_{scale}",
            )
    with right:
        st.markdown(f"Scale {scale + 2} prediction")
        rows = [{"class": name, "probability": format_prob(p)} for name, p in top_classes(nxt.probs, loaded.classes, 5)]
        st.dataframe(rows, hide_index=True, width="stretch")
        headline("Combined (mean of scales)", trace.probs, loaded.classes)


@st.fragment
@guarded
def dppm_panel(loaded: LoadedModel, image: ImageChoice, parts: bool = False) -> None:
    """The α slider and everything it changes; only this fragment reruns when the slider moves."""
    base = traces.rams_base(loaded, image)
    default = float(base.value.options["threshold"][0])
    alpha = st.slider(
        "Threshold α (mask = rollout > α · mean)",
        ALPHA_RANGE[0],
        ALPHA_RANGE[1],
        value=min(max(default, ALPHA_RANGE[0]), ALPHA_RANGE[1]),
        step=0.05,
        key="dppm_alpha",
        help=f"The checkpoint uses α = {default:g}; the official code 1.2 (1.3 for a third scale).",
    )
    result = traces.rams_trace(loaded, image, threshold=alpha)  # one α for every zoom
    trace = result.value
    timing_caption(
        [
            f"α update: {result.caption()} (scale-1 attention reused: rollout, box and scale 2 only)",
            f"full trace of this image: {base.ms:.1f} ms",
        ]
    )
    scales = [f"Scale {s + 1}" for s in range(len(trace.scales))]
    step = st.radio("Step through the scales", scales, horizontal=True, key="dppm_step")
    s = scales.index(step)
    scale_step(trace, s, loaded, image, alpha, parts)
    if s + 1 < len(trace.scales):
        zoom_result(trace, s, loaded, image)
    else:
        st.caption("The last scale's box is shown but leads nowhere: there is no further zoom.")
    figure_download(
        "DPPM figure, every scale (PNG)",
        lambda: dppm_figure(trace, image=image.image, class_names=loaded.classes, preprocess=loaded.preprocess),
        f"dppm_{slug(image.name)}_alpha{alpha:g}",
        key="dl_dppm_fig",
    )


@guarded
def main() -> None:
    selection = render_sidebar()
    st.title("DPPM scales · RAMS-Trans")
    st.caption(
        "Scale 1 sees the whole image. Its attention rollout is thresholded at α × mean; the largest connected "
        "part of that mask gives a box, which is cut from the image and seen again at full size by the same ViT "
        "(scale 2). Move α and watch the box and scale 2's prediction change."
    )
    loaded = selection.model("rams_trans")
    image = selection.require_image()
    input_note(loaded, image)
    familiarity_warning(loaded, image, traces.rams_base(loaded, image).value.probs, selection.paths)
    dppm_panel(loaded, image, selection.show_parts)


main()
