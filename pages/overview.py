"""Overview: the image, both models' top-5 predictions per scale/stage and combined, and what each model is."""

from __future__ import annotations

import streamlit as st

from fgvc_core.app import traces
from fgvc_core.app.guard import guarded, page_guard
from fgvc_core.app.settings import MODEL_KINDS, MODEL_TITLES
from fgvc_core.app.sidebar import Selection, render_sidebar
from fgvc_core.app.views import figure_download, headline, input_note, model_facts, plotly, prediction_line, slug
from fgvc_core.explain.figures import prediction_figure
from fgvc_core.explain.plots import topk_bar


def head_probabilities(kind: str, trace) -> dict:
    """Per-head probabilities of a trace: scales for RAMS-Trans, stages and concat for CRA-SMRA."""
    if kind == "rams_trans":
        return {scale.head_name: scale.probs for scale in trace.scales}
    return dict(trace.head_probs)


def model_column(selection: Selection, kind: str) -> None:
    st.subheader(MODEL_TITLES[kind])
    loaded = selection.model(kind)
    image = selection.require_image()
    result = traces.rams_base(loaded, image) if kind == "rams_trans" else traces.cra_base(loaded, image)
    trace = result.value
    classes = loaded.classes
    headline("Combined prediction", trace.probs, classes)
    input_note(loaded, image)
    if image.label_name is not None:
        correct = classes[int(trace.probs.argmax())] == image.label_name
        st.caption(f"True class: {image.label_name} ({'correct' if correct else 'wrong'})")
    heads = head_probabilities(kind, trace)
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
        st.image(image.image, caption=f"{image.name} · {image.image.size[0]}×{image.image.size[1]} px", width="stretch")
        if image.label_name is not None:
            st.caption(f"True class: **{image.label_name}**")
        target = selection.target or "each model's prediction"
        st.caption(f"Maps explain: {target}.")
    with right:
        columns = st.columns(len(MODEL_KINDS))
        for column, kind in zip(columns, MODEL_KINDS):
            with column, page_guard():
                model_column(selection, kind)


main()
