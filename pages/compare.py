"""Compare variants on one image: per-stage Grad-CAM of up to three CRA-SMRA checkpoints (the papers' Figs. 4-6)
and RAMS-Trans with 1 scale vs 2 scales, each with its prediction and the target class's probability."""

from __future__ import annotations

import numpy as np
import streamlit as st

from fgvc_core.app import render, traces
from fgvc_core.app.cam_views import stage_cam_row
from fgvc_core.app.compare_choices import Choice, compare_options, compare_plan, default_choices
from fgvc_core.app.guard import guarded, page_guard
from fgvc_core.app.images import ImageChoice
from fgvc_core.app.models import LoadedModel, load_model
from fgvc_core.app.settings import MODEL_TITLES
from fgvc_core.app.sidebar import Selection, render_sidebar
from fgvc_core.app.views import image_with_download, prediction_line, timing_caption
from fgvc_core.explain.attribution.cam import CAM_METHODS
from fgvc_core.explain.attribution.methods import CAM_LABELS
from fgvc_core.explain.rendering.figure_utils import format_prob


def target_text(selection: Selection, loaded: LoadedModel, probs) -> tuple[int, str]:
    """The class to explain (the sidebar's rule) and ``"prediction … · P(class) = …"`` for one checkpoint."""
    target, why = selection.target_class(loaded, probs)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    return target, (
        f"prediction {prediction_line(p, loaded.classes)} · P({loaded.classes[target]}) = {format_prob(p[target])} "
        f"· {why}"
    )


def pick(options: list[Choice], kind: str, key: str) -> list[Choice]:
    """A multiselect of at most the plan's limit of checkpoints, starting with :func:`default_choices`."""
    by_path = {str(c.path): c for c in options}
    limit = compare_plan(kind).limit
    chosen = st.multiselect(
        f"{MODEL_TITLES[kind]} checkpoints (up to {limit})",
        list(by_path),
        default=[str(c.path) for c in default_choices(options, kind)],
        format_func=lambda p: by_path[p].label,
        max_selections=limit,
        key=key,
    )
    return [by_path[p] for p in chosen]


def cra_row(selection: Selection, choice: Choice, image: ImageChoice, method: str, opacity: float, i: int) -> None:
    loaded = load_model(choice.path)
    base = traces.cra_base(loaded, image)
    target, text = target_text(selection, loaded, base.value.probs)
    variant = loaded.model.config.get("variant", "?")
    st.markdown(f"**{choice.label}** · variant `{variant}` · {text}")
    probability = float(base.value.probs.reshape(-1)[target])
    result = stage_cam_row(
        loaded,
        image,
        target,
        method,
        None,
        opacity,
        key=f"cmp_cra_{i}",
        parts=selection.show_parts,
        probability=probability,
    )
    timing_caption([base.caption("trace"), f"stage CAMs {result.caption()}"])


@st.fragment
@guarded
def cra_panel(selection: Selection, image: ImageChoice) -> None:
    """Each chosen CRA-SMRA checkpoint as one row: input, then stages 3, 4, 5 (method and opacity shared)."""
    options = compare_options(selection.paths, "cra_smra")
    chosen = pick(options, "cra_smra", "compare_cra")
    c1, c2 = st.columns(2)
    method = c1.selectbox("CAM method", list(CAM_METHODS), format_func=CAM_LABELS.get, key="compare_cam_method")
    opacity = c2.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="compare_opacity")
    if not chosen:
        st.info(
            "Pick CRA-SMRA checkpoints above: the `cra_table3` grid's median-seed runs (`python -m train.ablate "
            "--grid cra_table3`) when they exist, or any checkpoint of the checkpoint roots, e.g. the γ sweep."
        )
        return
    for i, choice in enumerate(chosen):
        with page_guard():  # one unreadable checkpoint says why in its row; the others still show
            cra_row(selection, choice, image, method, opacity, i)


def rams_row(selection: Selection, choice: Choice, image: ImageChoice, i: int) -> int:
    """One RAMS-Trans checkpoint: each scale's input with its rollout, the zoom box, and each scale's top-1."""
    loaded = load_model(choice.path)
    base = traces.rams_base(loaded, image)
    trace = base.value
    _, text = target_text(selection, loaded, trace.probs)
    scales = len(trace.scales)
    st.markdown(f"**{choice.label}** · {scales} scale{'s' if scales > 1 else ''} · {text}")
    columns = st.columns(3)
    panels = [(0, "rollout")] + ([(0, "box")] + [(s, "rollout") for s in range(1, scales)] if scales > 1 else [])
    for column, (s, view) in zip(columns, panels):
        with column:
            shown = render.dppm_views(trace, s, loaded.preprocess)[view]
            p = trace.scales[s].probs
            what = "its box: the zoom" if view == "box" else f"rollout · top-1 {prediction_line(p, loaded.classes)}"
            image_with_download(
                shown, f"scale {s + 1} · {what}", f"compare_rams{i}_s{s + 1}_{view}", f"cmp_rams_{i}_{s}_{view}"
            )
    timing_caption([base.caption("trace")])
    return scales


@st.fragment
@guarded
def rams_panel(selection: Selection, image: ImageChoice) -> None:
    options = compare_options(selection.paths, "rams_trans")
    chosen = pick(options, "rams_trans", "compare_rams")
    if not chosen:
        st.info("Pick RAMS-Trans checkpoints above (the `rams` grid's one_scale and two_scales medians, if run).")
        return
    counts: list[int] = []
    for i, choice in enumerate(chosen):
        with page_guard():
            counts.append(rams_row(selection, choice, image, i))
    if sorted(counts) != [1, 2]:
        st.caption(
            "For 1 scale vs 2 scales, pick one checkpoint of each: the `rams` grid's `one_scale` and `two_scales` "
            f"(`python -m train.ablate --grid rams`); the picked ones have {', '.join(map(str, counts))} scales."
        )


@guarded
def main() -> None:
    selection = render_sidebar()
    st.title("Compare variants")
    st.caption(
        "The same image through several checkpoints side by side (the papers' Figs. 4-6): CRA-SMRA's stage 3, 4, 5 "
        "Grad-CAM per variant, and RAMS-Trans with one scale vs two. Each row explains the sidebar's target class "
        "(by default its own prediction) and shows that class's probability."
    )
    image = selection.require_image()
    st.subheader("CRA-SMRA variants: per-stage CAM")
    cra_panel(selection, image)
    st.subheader("RAMS-Trans: 1 scale vs 2 scales")
    rams_panel(selection, image)


main()
