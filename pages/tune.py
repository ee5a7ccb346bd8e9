"""Tune δ and γ: retrained γ/δ grids (mean ± sd over seeds), a test-time δ sweep of one model, background training."""

from __future__ import annotations

import streamlit as st

from fgvc_core.app.ablation_views import retrained_section
from fgvc_core.app.allowed import allowed_roots
from fgvc_core.app.checkpoints import describe
from fgvc_core.app.guard import guarded, page_guard
from fgvc_core.app.images import gallery
from fgvc_core.app.session import timed
from fgvc_core.app.settings import MODEL_TITLES, AppPaths, display_path
from fgvc_core.app.sidebar import Selection, render_sidebar
from fgvc_core.app.sweeps import delta_grid, delta_sweep
from fgvc_core.app.training import (
    failure_reason,
    list_runs,
    metrics_series,
    recipes,
    run_state,
    start_training,
    stop_training,
)
from fgvc_core.app.training_form import form_overrides
from fgvc_core.app.views import plotly, timing_caption
from fgvc_core.errors import FGVCError
from fgvc_core.explain.attribution.cam import CAM_METHODS
from fgvc_core.explain.attribution.methods import CAM_LABELS
from fgvc_core.explain.rendering.plots import sweep_plot, training_curves
from fgvc_core.models.cra_smra.trace import ALL_SUPPRESSED_DELTA

SWEEP_KEY, RUN_KEY, SEEN_KEY = "_fgvc_delta_sweep", "_fgvc_train_run", "_fgvc_seen"
RUN_PICK_KEY = "train_run_pick"
DELTA_SWEEP_TITLE = "Test-time δ sweep of one trained model"
SWEEP_MIN = 0.4  # the first 0.05 step above 1/e, where δ stops suppressing every channel
DEFAULT_METRICS = ("top-1 combined", "pointing stage 5", "part energy stage 5", "pointing centre baseline")


# --------------------------------------------------------------------------------------- retrained γ and δ
def gamma_section(selection: Selection) -> None:
    st.caption(
        "One CRA-SMRA model (variant cram_smram) trained per γ, the weight of SMRAM's L_div, with several seeds and "
        "an equal budget (`train.ablate --grid cra_gamma`); the Compare variants page shows their Grad-CAMs."
    )
    retrained_section(selection.paths, "cra_gamma", "gamma", "γ", "the paper's Table 5", key="gamma_grid")


# ------------------------------------------------------------------------------------------------- δ sweep
def delta_section(selection: Selection) -> None:
    loaded = selection.model("cra_smra")
    trained = float(loaded.model.config["delta"])
    st.markdown(f"**{DELTA_SWEEP_TITLE}**")
    st.caption(
        f"δ acts at test time, so one trained model (`{display_path(loaded.path)}`, trained with δ = {trained:g}) "
        "is evaluated at every δ on the same benchmark images. This is not the paper's Table 4, which compares "
        "models trained with each δ. Explanation metrics score the stage CAMs of the predicted class against the "
        f"deciding parts. δ ≤ 1/e ≈ {ALL_SUPPRESSED_DELTA:.3f} suppresses every channel of every image (I ∈ (0, 1), "
        "so I*_c / max I* > 1/e), so the range starts above it."
    )
    with st.form("delta_sweep"):
        c1, c2, c3, c4 = st.columns(4)
        low, high = c1.slider("δ range", SWEEP_MIN, 1.0, (0.5, 1.0), 0.05, key="sweep_range")
        step = c2.select_slider("δ step", [0.05, 0.1, 0.25], value=0.1, key="sweep_step")
        samples = c3.number_input("Benchmark images", 4, 600, 24, 4, key="sweep_samples")
        method = c4.selectbox("CAM method", list(CAM_METHODS), format_func=CAM_LABELS.get, key="sweep_method")
        submitted = st.form_submit_button("Run the δ sweep")
    if submitted:
        deltas = delta_grid(low, high, step)
        dataset = gallery(str(selection.paths.data))
        bar = st.progress(0.0, text="δ sweep…")
        result, ms = timed(
            lambda: delta_sweep(
                loaded.model,
                dataset,
                loaded.preprocess,
                deltas,
                int(samples),
                cam_method=method,
                progress=lambda f: bar.progress(f, text=f"δ sweep: {f:.0%}"),
            )
        )
        st.session_state[SWEEP_KEY] = {"model": loaded.key, "result": result, "ms": ms}
    stored = st.session_state.get(SWEEP_KEY)
    if stored is None or stored["model"] != loaded.key:
        st.caption("Run the sweep to see the curves.")
        return
    result = stored["result"]
    names = list(result.metrics)
    chosen = st.multiselect(
        "Metrics", names, default=[n for n in DEFAULT_METRICS if n in names], key="delta_metric_names"
    )
    if chosen:
        plotly(
            sweep_plot(
                result.deltas, {n: result.metrics[n] for n in chosen}, "δ", f"{DELTA_SWEEP_TITLE}: metrics vs δ"
            ),
            "delta_sweep",
            key="d_plot",
        )
    st.dataframe(result.rows(), hide_index=True, width="stretch")
    timing_caption(
        [
            f"{result.images} images ({result.scored} with deciding parts), CAM {result.cam_method}",
            f"computed in {stored['ms'] / 1000:.1f} s",
        ]
    )


# ------------------------------------------------------------------------------------------------ training
def use_checkpoint(kind: str, path: str) -> None:
    """Button callback: select the new checkpoint in the sidebar (runs before the next script run)."""
    st.session_state[f"model_{kind}"] = path


def run_monitor(run_dir, paths: AppPaths) -> None:
    """Progress, live curves and the result of one run; reruns itself every 2 s while the run is active."""
    active = run_state(run_dir).active

    @st.fragment(run_every=2.0 if active else None)
    @guarded
    def monitor() -> None:
        state = run_state(run_dir)
        status = state.status or {}
        seen = st.session_state.setdefault(SEEN_KEY, {})
        was_active, seen[str(run_dir)] = seen.get(str(run_dir)), state.active
        step, total = status.get("step", 0), status.get("total_steps", "?")
        st.progress(
            min(1.0, state.fraction), text=f"{state.state} · step {step}/{total} · epoch {status.get('epoch', 0)}"
        )
        try:
            plotly(training_curves(metrics_series(run_dir)), f"curves_{run_dir.name}", key="train_curves")
        except FGVCError:
            st.caption("Waiting for the first logged step…")
        if state.state == "done" and state.checkpoint is not None:
            info = describe(state.checkpoint, "run")
            st.success(
                f"Done. New {MODEL_TITLES[info.kind]} checkpoint: `{display_path(state.checkpoint)}` "
                "(now listed in the sidebar)."
            )
            st.button("Use it in the sidebar", on_click=use_checkpoint, args=(info.kind, str(info.path)), key="use_new")
            if was_active:
                st.rerun(scope="app")  # the sidebar lists the new checkpoint only after a full run
        elif state.state == "failed":
            # A short reason, never the log: a traceback would show the server's paths and code to the visitor.
            reason = failure_reason(state.log_tail, state.status, allowed_roots(paths).every)
            st.error(f"The run failed at step {step}: {reason}")
        elif state.state == "stopped":
            st.info(f"The run was stopped at step {step}/{total}. Its last checkpoint, if any, is in its folder.")
        elif st.button("Stop this run", key="stop_run"):
            stop_training(run_dir)
            st.rerun(scope="app")

    monitor()


def training_section(selection: Selection) -> None:
    paths = selection.paths
    available = recipes(paths)
    st.caption(
        f"Starts `python -m train.train` in the background with its own output folder under "
        f"`{display_path(paths.runs)}`. Demo recipes train from scratch on the CPU; keep the steps small."
    )
    if not available:
        st.info(f"No recipes in `{display_path(paths.recipes)}`.")
    else:
        with st.form("train_form"):
            recipe = st.selectbox("Recipe", available, format_func=lambda p: p.name, key="train_recipe")
            c1, c2, c3 = st.columns(3)
            epochs = c1.number_input("Epochs", 1, 500, 1, key="train_epochs")
            max_steps = c2.number_input("Max steps (0: no limit)", 0, 1_000_000, 100, 10, key="train_max_steps")
            samples = c3.number_input("Images per epoch (synth stream)", 32, 1_000_000, 1600, 32, key="train_samples")
            extra = st.text_area(
                "More overrides, one per line", placeholder="model.gamma=0.5\nmodel.delta=0.8", key="train_extra"
            )
            submitted = st.form_submit_button("Start training in the background")
        if submitted:
            with page_guard():  # a refused start says why in one line; the runs below stay on the page
                run_dir = start_training(recipe, form_overrides(recipe, epochs, max_steps, samples, extra), paths)
                # The run picker is keyed, so it would keep showing the previous run: point it at the new one
                # before it is drawn.
                st.session_state[RUN_KEY] = st.session_state[RUN_PICK_KEY] = str(run_dir)
                st.success(f"Started `{display_path(run_dir)}`.")
    runs = list_runs(paths)
    if not runs:
        return
    names = [str(r) for r in runs]
    current = st.session_state.get(RUN_KEY)
    if st.session_state.get(RUN_PICK_KEY) not in names:
        st.session_state.pop(RUN_PICK_KEY, None)
    index = names.index(current) if current in names else 0
    chosen = st.selectbox("Run", names, index=index, format_func=lambda p: display_path(p), key=RUN_PICK_KEY)
    run_monitor(runs[names.index(chosen)], paths)


def delta_tab(selection: Selection) -> None:
    """δ retrained (one model per δ, seeds) first; then the test-time sweep of the sidebar's model, labelled so."""
    with page_guard():
        st.caption(
            "One CRA-SMRA model (variant cram_smram) trained per δ with several seeds and an equal budget "
            "(`train.ablate --grid cra_delta`)."
        )
        retrained_section(selection.paths, "cra_delta", "delta", "δ", "the paper's Table 4", key="delta_grid")
    st.divider()
    with page_guard():
        delta_section(selection)


@guarded
def main() -> None:
    selection = render_sidebar()
    st.title("Tune δ and γ")
    gamma_tab, delta_tab_, train_tab = st.tabs(["γ (retrained)", "δ", "Train a model"])
    with gamma_tab, page_guard():
        gamma_section(selection)
    with delta_tab_:
        delta_tab(selection)
    with train_tab, page_guard():
        training_section(selection)


main()
