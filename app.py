"""FGVC Explorer: the Streamlit entry script. It owns page config and navigation; pages own the layout.

Run it with ``make app`` (or ``streamlit run app.py --server.fileWatcherType none``: the file watcher trips over
``torch.classes``). The shared sidebar is drawn by each page (``fgvc_core.app.sidebar.render_sidebar``), never
here: an uploader in this entry script never receives its file in a real browser (docs/ARCHITECTURE.md, "Known traps").
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from fgvc_core.app.settings import configure_torch

configure_torch()  # half the cores by default: the app shares the CPU with the training runs it starts
st.set_page_config(page_title="FGVC Explorer", page_icon="🔎", layout="wide")
# Belt and braces: pages already catch every error (fgvc_core.app.guard), and none may show a traceback.
st.set_option("client.showErrorDetails", "type")

PAGES = Path(__file__).parent / "pages"

navigation = st.navigation(
    {
        "Explore": [
            st.Page(PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
            st.Page(PAGES / "evaluation.py", title="Evaluation", icon=":material/grid_on:"),
        ],
        "RAMS-Trans": [
            st.Page(PAGES / "dppm.py", title="DPPM scales", icon=":material/zoom_in:"),
            st.Page(PAGES / "rollout.py", title="Attention rollout", icon=":material/waves:"),
        ],
        "CRA-SMRA": [
            st.Page(PAGES / "cram.py", title="CRAM channel masks", icon=":material/tune:"),
            st.Page(PAGES / "gradcam.py", title="Per-stage Grad-CAM", icon=":material/local_fire_department:"),
        ],
        "Tune and data": [
            st.Page(PAGES / "tune.py", title="Tune δ/γ", icon=":material/science:"),
            st.Page(PAGES / "compare.py", title="Compare variants", icon=":material/compare:"),
            st.Page(PAGES / "benchmark.py", title="Benchmark", icon=":material/photo_library:"),
        ],
    }
)
navigation.run()
