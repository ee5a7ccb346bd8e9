"""The generated benchmark: one sample per class, with the parts that decide each class."""

from __future__ import annotations

import streamlit as st

from fgvc_core.app.guard import guarded, one_line
from fgvc_core.app.images import gallery
from fgvc_core.app.settings import display_path
from fgvc_core.app.sidebar import render_sidebar
from fgvc_core.errors import FGVCError


@guarded
def main() -> None:
    selection = render_sidebar()
    st.title("Generated fine-grained benchmark")
    st.caption(
        "Classes differ only by small local parts; body colour, pose, scale and background vary freely. "
        "This is the app's embedded default data set."
    )
    root = selection.paths.data
    try:
        dataset = gallery(str(root))
    except FGVCError as exc:
        st.error(
            f"The demo benchmark is not available in {display_path(root)}: {one_line(exc)}. Run `make app` "
            "(it writes it) or `python -m train.make_demo_data`."
        )
        return
    st.write(f"{len(dataset)} test images, {len(dataset.classes)} classes, in `{display_path(root)}`.")
    first_of_class: dict[int, int] = {}
    for index, (_, label) in enumerate(dataset.samples):
        first_of_class.setdefault(label, index)
    columns = st.columns(6)
    for slot, (label, index) in enumerate(sorted(first_of_class.items())):
        image, _ = dataset[index]
        parts = ", ".join(dataset.deciding_parts[label])
        columns[slot % 6].image(image, caption=f"{dataset.classes[label]} (decided by: {parts})", width="stretch")
    with st.expander("Class table (what decides each class)"):
        st.json(dataset.meta.get("classes", dataset.meta))


main()
