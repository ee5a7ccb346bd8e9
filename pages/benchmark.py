"""The generated benchmark: one sample per class, with the deciding parts named."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

import fgvc_core

DATA_ROOT = Path(__file__).resolve().parents[1] / "data" / "synth"

st.title("Generated fine-grained benchmark")
st.caption(
    "Classes differ only by small local parts; body colour, pose, scale and background vary freely. "
    "This is the app's embedded default data set."
)

try:
    dataset = fgvc_core.build_dataset("synth", DATA_ROOT, "test")
except fgvc_core.FGVCError as exc:
    st.error(
        f"The demo benchmark is not available: {exc}. Run `make app` (it writes it) or "
        "`python -m train.make_demo_data`."
    )
    st.stop()

meta_path = DATA_ROOT / "synth_meta.json"
meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
st.write(f"{len(dataset)} test images, {len(dataset.classes)} classes.")

first_of_class: dict[int, int] = {}
for index, (_, label) in enumerate(dataset.samples):
    first_of_class.setdefault(label, index)

columns = st.columns(6)
for slot, (label, index) in enumerate(sorted(first_of_class.items())):
    image, _ = dataset[index]
    columns[slot % 6].image(image, caption=dataset.classes[label], width="stretch")
if meta:
    with st.expander("Class table (what decides each class)"):
        st.json(meta.get("classes", meta))
