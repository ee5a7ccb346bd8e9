"""Every visit runs through ``app.py``, also one that opens a page's URL first on a freshly started server.

Streamlit finds ``pages/`` beside the entry script and, until some session has run ``st.navigation``, serves a page
URL such as ``/cram`` in its legacy multipage mode: it runs ``pages/cram.py`` alone, so ``app.py`` (the navigation
menu, the wide layout, the torch thread setting) never runs. Measured here: the CRAM page then traced with two
torch threads fighting the browser for a 2-core CPU. The flag is process-wide (``PagesManager.uses_pages_directory``,
which ``st.navigation`` itself clears), so clearing it once and rerunning sends this and every later run through
``app.py``, which resolves the same URL to the same page. Once per session at most: ``AppTest`` resets the flag
before every run it makes, and a rerun on each would drop the widget event (a button click) that run carries.
"""

from __future__ import annotations

import streamlit as st

ENTRY_RERUN_KEY = "_fgvc_entry_rerun"


def ensure_app_entry() -> None:
    """Rerun through ``app.py`` when Streamlit ran this page in its legacy mode (a no-op otherwise)."""
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False) and not st.session_state.get(ENTRY_RERUN_KEY):
        st.session_state[ENTRY_RERUN_KEY] = True
        PagesManager.uses_pages_directory = False
        st.rerun()
