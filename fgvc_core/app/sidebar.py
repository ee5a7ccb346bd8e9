"""The sidebar every page calls first: the two models, the image (gallery or upload) and the target class.

Why a helper the pages call, and not widgets in ``app.py``: a ``st.file_uploader`` in the ``st.navigation`` entry
script never receives its file in a real browser (docs/ARCHITECTURE.md, "Known traps"). Widgets keep their values across
pages with ``persist_state="session"``; the decoded upload is kept in ``st.session_state`` because an uploader
that is drawn again on another page starts empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from fgvc_core.app.allowed import allowed_roots, confine
from fgvc_core.app.checkpoints import CheckpointInfo, list_checkpoints, validate_checkpoint_path
from fgvc_core.app.datasets import (
    DATASET_NAMES,
    DATASET_TITLES,
    SPLITS,
    DatasetChoice,
    checkpoint_dataset,
    choose_dataset,
    class_mismatch,
    dataset_image,
    open_dataset,
)
from fgvc_core.app.entry import ensure_app_entry
from fgvc_core.app.guard import one_line
from fgvc_core.app.images import ImageChoice, gallery_order, uploaded_image
from fgvc_core.app.models import LoadedModel, load_model
from fgvc_core.app.settings import MODEL_KINDS, MODEL_TITLES, UPLOAD_KINDS, AppPaths, app_paths, display_path
from fgvc_core.errors import CheckpointError, FGVCError

TYPED = "__typed__"
PREDICTED = "__predicted__"
SOURCES = ("Benchmark sample", "Upload")
SOURCE_KEY, DATASET_KEY, ROOT_KEY, SPLIT_KEY, INDEX_KEY = (
    "image_source",
    "dataset_name",
    "dataset_root",
    "dataset_split",
    "gallery_index",
)
UPLOAD, UPLOAD_ID, UPLOAD_ERROR = "_fgvc_upload", "_fgvc_upload_id", "_fgvc_upload_error"


@dataclass
class Selection:
    """What the sidebar selected. Models load lazily: a page asks only for the ones it shows.

    Attributes:
        paths: the app's folders.
        checkpoints: per model kind, the chosen checkpoint, or None.
        problems: per model kind without a checkpoint (and ``"dataset"`` for a bad dataset), why (shown by the
            page that needs it).
        image: the image to explain, or None when there is none yet.
        dataset: the dataset the sidebar picks images from, or None when its root or layout is wrong.
        target: the class name to explain, or None for each model's own prediction.
    """

    paths: AppPaths
    checkpoints: dict[str, CheckpointInfo | None] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    image: ImageChoice | None = None
    target: str | None = None
    dataset: DatasetChoice | None = None
    show_parts: bool = False

    def has(self, kind: str) -> bool:
        return self.checkpoints.get(kind) is not None

    def model(self, kind: str) -> LoadedModel:
        """The shared, loaded model of ``kind``.

        Raises:
            CheckpointError: none chosen, or the file cannot be loaded (the message says what to do).
        """
        info = self.checkpoints.get(kind)
        if info is None:
            raise CheckpointError(self.problems.get(kind) or f"choose a {MODEL_TITLES[kind]} checkpoint in the sidebar")
        return load_model(info.path)

    def require_image(self) -> ImageChoice:
        """The chosen image; stops the page with a hint when there is none."""
        if self.image is None:
            st.info("Choose a benchmark sample or upload an image in the sidebar.")
            st.stop()
        return self.image

    def target_class(self, loaded: LoadedModel, probs: Any) -> tuple[int, str]:
        """The class to explain for ``loaded`` and a short description of why it is that one.

        ``probs`` is the model's combined prediction ``(K,)`` or ``(1, K)`` for this image.
        """
        predicted = int(np.asarray(probs).reshape(-1).argmax())
        names = loaded.classes
        if self.target is None:
            return predicted, f"predicted class {names[predicted]}"
        if self.target in names:
            return names.index(self.target), f"chosen class {self.target}"
        return predicted, f"{self.target} is not a class of this model: explaining its prediction {names[predicted]}"


def _model_slot(sidebar: Any, paths: AppPaths, kind: str, selection: Selection) -> None:
    title = MODEL_TITLES[kind]
    infos = list_checkpoints(paths, kind)
    by_path = {str(info.path): info for info in infos}
    options = [*by_path, TYPED]
    choice = sidebar.selectbox(
        title,
        options,
        key=f"model_{kind}",
        format_func=lambda value: "Type a path…" if value == TYPED else by_path[value].label,
        persist_state="session",
    )
    if choice != TYPED:
        selection.checkpoints[kind] = by_path[choice]
        return
    text = sidebar.text_input(
        f"{title} checkpoint path",
        key=f"path_{kind}",
        placeholder="checkpoints/my_model.safetensors",
        persist_state="session",
    )
    selection.checkpoints[kind] = None
    if not infos and not text:
        selection.problems[kind] = (
            f"No {title} checkpoint in {display_path(paths.checkpoints)}: train one on the Tune page "
            "(or `make app` after the demo training), or type a path in the sidebar"
        )
        sidebar.caption(selection.problems[kind])
        return
    try:
        selection.checkpoints[kind] = validate_checkpoint_path(text, paths.root, kind)
    except FGVCError as exc:  # CheckpointError, or PathNotAvailable outside the allowed roots
        selection.problems[kind] = f"{title}: {one_line(exc)}"
        if text.strip():
            sidebar.error(one_line(exc))


def _use_checkpoint_data(name: str, root: str, split: str) -> None:
    st.session_state.update({DATASET_KEY: name, ROOT_KEY: root, SPLIT_KEY: split})
    st.session_state.pop(INDEX_KEY, None)


def _offer_checkpoint_data(sidebar: Any, selection: Selection, current: tuple[str, str, str]) -> None:
    """A button that switches to the data the chosen checkpoint was trained on, when it is not the current one."""
    for info in selection.checkpoints.values():
        trained = checkpoint_dataset(info.meta) if info is not None else None
        if (
            trained is None
            or (trained[0], trained[2]) == (current[0], current[2])
            and _same_root(trained[1], current[1])
        ):
            continue
        sidebar.button(
            f"Use {Path(info.path).name}'s data ({trained[0]}, {trained[2]})",
            key=f"use_data_{info.kind}",
            on_click=_use_checkpoint_data,
            args=trained,
        )
        return


def _same_root(a: str, b: str) -> bool:
    roots = allowed_roots().data
    try:
        return confine(a, roots) == confine(b, roots)
    except FGVCError:
        return a.strip() == b.strip()


def _dataset(sidebar: Any, paths: AppPaths, selection: Selection) -> Any:
    """The dataset picker (loader, root, split); returns the opened dataset, or None with a one-line error shown."""
    name = sidebar.selectbox(
        "Dataset", DATASET_NAMES, key=DATASET_KEY, format_func=DATASET_TITLES.get, persist_state="session"
    )
    root = sidebar.text_input(
        "Dataset root",
        value=display_path(paths.data),
        key=ROOT_KEY,
        help="A folder in the dataset's official layout, inside the server's data roots (FGVC_DATA_ROOTS).",
        persist_state="session",
    )
    splits = SPLITS.get(name, ("test",))
    if st.session_state.get(SPLIT_KEY) not in (None, *splits):
        st.session_state.pop(SPLIT_KEY)  # a split the new loader does not have (e.g. aircraft's "val" on CUB)
    split = sidebar.selectbox("Split", splits, key=SPLIT_KEY, persist_state="session")
    _offer_checkpoint_data(sidebar, selection, (name, root, split))
    try:
        selection.dataset = choose_dataset(name, root, split)
        dataset = open_dataset(selection.dataset)
    except FGVCError as exc:  # PathNotAvailable outside the data roots, DatasetError/ConfigError for the layout
        selection.dataset = None
        selection.problems["dataset"] = one_line(exc)
        if name == "synth" and _same_root(root, str(paths.data)):  # the default benchmark is not generated yet
            sidebar.warning(f"No benchmark: {one_line(exc)}. Run `python -m train.make_demo_data` or upload an image.")
        else:
            sidebar.error(one_line(exc))
        return None
    for kind, info in selection.checkpoints.items():
        if info is not None and info.classes:
            warning = class_mismatch(dataset.classes, info.classes, MODEL_TITLES[kind])
            if warning:
                sidebar.warning(warning)
    return dataset


def sample_widget_key(choice: DatasetChoice) -> str:
    """The Sample selectbox's key: one per dataset. With one key for all, a switch of dataset kept the value (index
    0) and Chromium kept showing the previous dataset's label for it, while the pages showed the new image."""
    return f"{INDEX_KEY}@{choice.key}"


def _dataset_sample(sidebar: Any, selection: Selection, dataset: Any) -> ImageChoice | None:
    state = st.session_state
    order = gallery_order(dataset)
    current = state.get(INDEX_KEY)  # the current image's index: set by this widget or by the evaluation page
    if isinstance(current, int) and current not in order:
        if 0 <= current < len(dataset):
            order = [current, *order]  # opened from the evaluation page: it may lie outside the first five per class
        else:
            state.pop(INDEX_KEY)  # an index of another dataset
            current = None
    widget = sample_widget_key(selection.dataset)
    if isinstance(current, int) and state.get(widget) != current:
        state[widget] = current  # opened elsewhere (a user's own pick reaches INDEX_KEY first, by on_change)
    index = sidebar.selectbox(
        "Sample",
        order,
        key=widget,
        format_func=lambda i: f"{dataset.classes[dataset.samples[i][1]]} · #{i}",
        on_change=lambda: state.update({INDEX_KEY: state[widget]}),
        persist_state="session",
    )
    # INDEX_KEY, not the returned value, is the current image: the first run after a page switch can return the
    # widget's default before its saved value is restored (seen in AppTest), and that must not replace the choice.
    if not isinstance(state.get(INDEX_KEY), int):
        state[INDEX_KEY] = int(index)
    return dataset_image(selection.dataset, dataset, int(state[INDEX_KEY]))


def _upload(sidebar: Any) -> ImageChoice | None:
    state = st.session_state
    # No type= list: Streamlit would raise on a .svg while restoring the widget, before this code runs; the
    # suffix and the content are checked by uploaded_image instead, with a one-line message.
    uploaded = sidebar.file_uploader("Upload an image", key="uploader", help=f"{UPLOAD_KINDS}.")
    if uploaded is not None and uploaded.file_id != state.get(UPLOAD_ID):
        state[UPLOAD_ID] = uploaded.file_id
        try:
            state[UPLOAD] = uploaded_image(uploaded.getvalue(), uploaded.name)
            state.pop(UPLOAD_ERROR, None)
        except FGVCError as exc:
            state[UPLOAD_ERROR] = one_line(exc)
    if state.get(UPLOAD_ERROR):
        sidebar.error(state[UPLOAD_ERROR])
    current = state.get(UPLOAD)
    if current is not None and state.get(UPLOAD_ERROR):
        sidebar.caption(f"Still showing the last good upload, {current.name}.")
    elif current is not None and uploaded is None:
        sidebar.caption(f"Showing {current.name}, uploaded earlier; drop a file to replace it.")
    elif current is None:
        sidebar.caption(f"{UPLOAD_KINDS}.")
    return current


def _target(sidebar: Any, selection: Selection) -> str | None:
    classes: list[str] = []
    for info in selection.checkpoints.values():
        if info is not None and info.classes:
            classes = info.classes
            break
    options = [PREDICTED, *classes]
    choice = sidebar.selectbox(
        "Target class",
        options,
        key="target_class",
        format_func=lambda c: "The prediction" if c == PREDICTED else c,
        help="The class the maps explain: each model's own prediction, or any class.",
        persist_state="session",
    )
    return None if choice in (PREDICTED, None) else str(choice)


def render_sidebar() -> Selection:
    """Draw the shared sidebar and return what it selected. Every page calls this first."""
    ensure_app_entry()  # a page URL opened first on a fresh server: go through app.py
    paths = app_paths()
    selection = Selection(paths)
    sidebar = st.sidebar
    sidebar.subheader("Models")
    for kind in MODEL_KINDS:
        try:
            _model_slot(sidebar, paths, kind, selection)
        except FGVCError as exc:  # e.g. an unreadable checkpoints folder
            selection.checkpoints[kind] = None
            selection.problems[kind] = one_line(exc)
            sidebar.error(one_line(exc))
    sidebar.subheader("Image")
    dataset = _dataset(sidebar, paths, selection)
    source = sidebar.radio("Source", SOURCES, key=SOURCE_KEY, horizontal=True, persist_state="session")
    if source == "Upload":
        selection.image = _upload(sidebar)
    elif dataset is not None:
        selection.image = _dataset_sample(sidebar, selection, dataset)
    if selection.image is not None:
        caption = selection.image.name
        if selection.image.label_name:
            caption += " (true class)"
        sidebar.image(selection.image.image, caption=caption, width=160)
        if selection.image.n_frames > 1:
            sidebar.info(f"An animation of {selection.image.n_frames} frames: only frame 0 is used.")
    if selection.image is not None and (selection.image.part_boxes is not None or selection.image.object_box):
        selection.show_parts = sidebar.toggle(
            "Draw ground-truth parts",
            key="show_parts",
            help="The object box (blue) and the deciding parts (green) on every map panel.",
        )
    selection.target = _target(sidebar, selection)
    return selection


def checkpoint_note(info: CheckpointInfo | None) -> str:
    """A one-line description of a checkpoint for captions."""
    if info is None:
        return "no checkpoint"
    return f"{MODEL_TITLES.get(info.kind, info.kind)} · {Path(info.path).name}"
