"""FGVC Explorer: the Streamlit entry script. It owns navigation and page config; pages own the layout."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

st.set_page_config(page_title="FGVC Explorer", page_icon="🔎", layout="wide")

PAGES = Path(__file__).parent / "pages"

navigation = st.navigation(
    [
        st.Page(PAGES / "benchmark.py", title="Benchmark", icon="🐦", default=True),
    ]
)
navigation.run()
