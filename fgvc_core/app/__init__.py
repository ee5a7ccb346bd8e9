"""Streamlit glue for the FGVC Explorer app: paths, cached model loading, per-session caches, the shared sidebar.

Nothing here does model maths: it finds checkpoints and images, loads them once, caches what the core computes
for one browser session, and lays out errors. The modules that need Streamlit import it themselves; the rest
(``settings``, ``checkpoints``, ``training``, ``sweeps``) are plain Python, so they are tested without a page.
"""
