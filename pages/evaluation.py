"""Evaluation: one checkpoint on the sidebar's dataset split: accuracy, per-class bars, confusion, misclassified."""

from __future__ import annotations

from typing import Any

import streamlit as st

from fgvc_core.app.datasets import open_dataset
from fgvc_core.app.eval_figures import SORTS, confusion_figure, per_class_bar, selected_cell
from fgvc_core.app.evaluation_cache import Evaluation, cache_file, evaluate, load_cached, store
from fgvc_core.app.guard import guarded
from fgvc_core.app.settings import MODEL_KINDS, MODEL_TITLES
from fgvc_core.app.sidebar import INDEX_KEY, SOURCE_KEY, SOURCES, Selection, render_sidebar
from fgvc_core.explain.rendering.figure_utils import format_prob
from fgvc_core.explain.scoring import confusion

GALLERY_LIMIT = 24
COLUMNS = 6
CELL_KEY, LAST_CLICK = "eval_cell", "_fgvc_eval_last_click"


def open_image(index: int) -> None:
    """Make dataset image ``index`` the current image of every page (the sidebar's sample)."""
    st.session_state[SOURCE_KEY] = SOURCES[0]
    st.session_state[INDEX_KEY] = int(index)
    st.session_state["_fgvc_opened"] = int(index)


def thumbnails(dataset: Any, evaluation: Evaluation, positions: list[int], key: str) -> None:
    """A grid of images with their true and predicted class; each has a button that opens it on the other pages."""
    shown = positions[:GALLERY_LIMIT]
    if len(positions) > len(shown):
        st.caption(f"Showing the first {len(shown)} of {len(positions)} images.")
    columns = st.columns(COLUMNS)
    classes = evaluation.classes
    for n, pos in enumerate(shown):
        index = evaluation.indices[pos]
        label = evaluation.labels[pos]
        predicted, p = evaluation.topk[pos][0], evaluation.topk_probs[pos][0]
        truth = classes[label] if label >= 0 else dataset.classes[dataset.samples[index][1]]
        with columns[n % COLUMNS]:
            st.image(dataset.load(index), caption=f"#{index} · true {truth}", width="stretch")
            st.caption(f"predicted {classes[predicted]} {format_prob(p)}")
            st.button("Open", key=f"{key}_open_{index}", on_click=open_image, args=(index,), width="stretch")


def evaluation_for(selection: Selection, kind: str, dataset: Any) -> Evaluation | None:
    """The cached evaluation, or the one computed now (with a progress bar) when the button is pressed."""
    loaded = selection.model(kind)
    path = cache_file(selection.paths, loaded.path, selection.dataset)
    found = load_cached(path)
    if found is not None:
        return found
    note = st.empty()  # cleared once the run starts: the results below must not sit under "not evaluated yet"
    note.info(f"{MODEL_TITLES[kind]} has not been evaluated on these {len(dataset)} images yet.")
    if not st.button(f"Evaluate {len(dataset)} images", key=f"eval_run_{kind}", type="primary"):
        return None
    note.empty()
    bar = st.progress(0.0, text=f"0 of {len(dataset)} images")
    result = evaluate(
        loaded.model,
        loaded.transform,
        dataset,
        loaded.classes,
        lambda done, n: bar.progress(done / max(n, 1), text=f"{done} of {n} images"),
    )
    describe = {"checkpoint": loaded.path.name, "dataset": selection.dataset.name, "split": selection.dataset.split}
    store(path, result, describe)
    bar.empty()
    return result


def summary(evaluation: Evaluation, dataset_size: int) -> None:
    m1, m2, m3 = st.columns(3)
    m1.metric("top-1", format_prob(evaluation.top(1)))
    m2.metric("top-5", format_prob(evaluation.top(5)))
    m3.metric("images", f"{len(evaluation.indices)} of {dataset_size}")
    notes = ["read from the evaluation cache" if evaluation.from_cache else "computed now and cached on disk"]
    if evaluation.unknown:
        notes.append(f"{evaluation.unknown} images of classes the checkpoint lacks are left out of the accuracy")
    if evaluation.skipped:
        notes.append(f"{len(evaluation.skipped)} unreadable images skipped (first: {evaluation.skipped[0][1]})")
    st.caption(" · ".join(notes))


def confusion_section(dataset: Any, evaluation: Evaluation, matrix) -> None:
    classes = evaluation.classes
    event = st.plotly_chart(
        confusion_figure(matrix, classes), on_select="rerun", selection_mode="points", key="eval_confusion"
    )
    clicked = selected_cell(event)
    if clicked is not None and clicked != st.session_state.get(LAST_CLICK):
        st.session_state[LAST_CLICK] = clicked  # a new click moves the picker below; an old one does not
        st.session_state[CELL_KEY] = clicked
    cells = [(t, p) for t in range(len(classes)) for p in range(len(classes)) if matrix[t, p] > 0]
    if st.session_state.get(CELL_KEY) not in cells:
        st.session_state.pop(CELL_KEY, None)
    if not cells:
        return
    cell = st.selectbox(
        "Images of the cell (true → predicted)",
        cells,
        key=CELL_KEY,
        format_func=lambda c: f"{classes[c[0]]} → {classes[c[1]]} ({matrix[c[0], c[1]]} images)",
    )
    positions = confusion.cell_images(evaluation.labels, evaluation.predictions, *cell)
    thumbnails(dataset, evaluation, positions, key="cell")


def pairs_table(evaluation: Evaluation, matrix) -> None:
    classes = evaluation.classes
    pairs = confusion.confused_pairs(matrix, limit=10)
    if not pairs:
        st.caption("No two classes are confused.")
        return
    rows = [
        {
            "class A": classes[p.a],
            "class B": classes[p.b],
            "A predicted as B": p.a_as_b,
            "B predicted as A": p.b_as_a,
            "total": p.total,
        }
        for p in pairs
    ]
    st.dataframe(rows, hide_index=True, width="stretch")


@guarded
def main() -> None:
    selection = render_sidebar()
    st.title("Evaluation")
    st.caption(
        "One checkpoint on the dataset split chosen in the sidebar: every image is classified once (the combined "
        "prediction) and the result is cached on disk, keyed by the checkpoint's SHA-256, the dataset, its root "
        "and the split, so the page re-opens instantly."
    )
    kind = st.radio("Model", MODEL_KINDS, format_func=MODEL_TITLES.get, key="eval_model", horizontal=True)
    if selection.dataset is None:
        st.info(f"Choose a dataset in the sidebar: {selection.problems.get('dataset', 'none chosen')}")
        st.stop()
    dataset = open_dataset(selection.dataset)
    st.caption(f"Dataset: {selection.dataset.label} · {len(dataset)} images, {len(dataset.classes)} classes")
    evaluation = evaluation_for(selection, kind, dataset)
    if evaluation is None:
        return
    opened = st.session_state.pop("_fgvc_opened", None)
    if opened is not None:
        st.success(f"Image #{opened} is now the current image on every page.")
        st.page_link("pages/overview.py", label="Open the Overview", icon=":material/dashboard:")
    summary(evaluation, len(dataset))
    matrix = evaluation.matrix()
    accuracy = confusion.per_class_accuracy(matrix)
    how = st.radio("Sort the classes", SORTS, key="eval_sort", horizontal=True)
    st.plotly_chart(per_class_bar(accuracy, matrix.sum(axis=1), evaluation.classes, how), key="eval_per_class")
    st.subheader("Confusion matrix")
    confusion_section(dataset, evaluation, matrix)
    st.subheader("Most confused pairs")
    pairs_table(evaluation, matrix)
    st.subheader("Misclassified images")
    wrong = evaluation.misclassified()
    if wrong:
        thumbnails(dataset, evaluation, wrong, key="wrong")
    else:
        st.caption("No image is misclassified.")


main()
