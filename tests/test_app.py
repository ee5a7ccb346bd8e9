"""The Streamlit app, driven by ``streamlit.testing.v1.AppTest`` on tiny checkpoints (CPU, a few seconds per page).

Every number a page shows after a control moves is compared with the core called directly (or a naive loop
written here): the app must lay out what fgvc_core computes, nothing else.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

import fgvc_core
from fgvc_core.app import checkpoints as ckpts
from fgvc_core.app import sweeps, training
from fgvc_core.app.settings import app_paths
from fgvc_core.errors import CheckpointError, ConfigError
from fgvc_core.explain.attribution.cam import stage_cams
from tests.app_fixtures import app_environment, sample_box

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ("overview", "dppm", "rollout", "cram", "gradcam", "tune", "compare", "benchmark")
TIMEOUT = 120


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("app_env")
    with app_environment(root) as variables:
        yield {"root": root, **variables}


def open_app(page: str = "overview") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page != "overview":
        at.switch_page(f"pages/{page}.py").run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return values[0]


def headlines(at: AppTest, label: str) -> list[str]:
    """The predictions shown in large type under ``label`` (``views.headline``), in page order."""
    prefix = f":gray[{label}]"
    return [m.value.split("#### ", 1)[1] for m in at.markdown if m.value.startswith(prefix)]


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def model_and_input(env, kind: str, at: AppTest):
    """The checkpoint's model and the network input of the image the sidebar selected."""
    model, meta = fgvc_core.load_checkpoint(Path(env["FGVC_CHECKPOINT_DIR"]) / f"{kind}_demo.safetensors")
    index = sample_box(at).value
    image = fgvc_core.build_dataset("synth", env["FGVC_DATA_ROOT"], "test")[index][0]
    return model, meta, fgvc_core.build_transform(meta)(image)[None]


def top1_text(probs: torch.Tensor, classes: list[str]) -> str:
    p = probs.reshape(-1)
    k = int(p.argmax())
    return f"{classes[k]} {100 * float(p[k]):.1f}%"


def peak_cell(m) -> tuple[int, int]:
    m = np.asarray(m, dtype=np.float64)
    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    return int(r), int(c)


def shown_peaks(texts: list[str]) -> list[tuple[int, int]]:
    """(row, col) of the peaks the captions print as ``pixel (x X, y Y)`` (issue 13: peaks in image pixels)."""
    return [(int(y), int(x)) for t in texts for x, y in re.findall(r"pixel \(x (\d+), y (\d+)\)", t)]


# ------------------------------------------------------------------------------------------------ all pages
def test_every_page_runs_and_switches_without_exception_keeping_the_sidebar(env):
    at = open_app()
    sample_box(at).select_index(3)
    at.sidebar.selectbox(key="target_class").select_index(2).run()
    chosen = (sample_box(at).value, at.sidebar.selectbox(key="target_class").value)
    for page in PAGES:
        at.switch_page(f"pages/{page}.py").run()
        assert_clean(at)
        assert at.title, f"{page} shows no title"
        assert (sample_box(at).value, at.sidebar.selectbox(key="target_class").value) == (chosen), (
            f"the sidebar choice was lost on {page}"
        )


def test_overview_shows_the_core_prediction_of_both_models(env):
    at = open_app()
    shown = headlines(at, "Combined prediction")
    expected = []
    for kind in ("rams_trans", "cra_smra"):
        model, meta, x = model_and_input(env, kind, at)
        expected.append(top1_text(model.trace(x).probs, meta["classes"]))
    assert shown == expected
    assert "combined top-1" in [m.label for m in at.metric]  # accuracy from the sidecar


# -------------------------------------------------------------------------------------------------- DPPM
def test_dppm_alpha_slider_moves_mask_and_box_as_the_core_says(env):
    at = open_app("dppm")
    model, _, x = model_and_input(env, "rams_trans", at)
    seen = set()
    for alpha in (0.8, 1.0, 1.3):
        at.slider(key="dppm_alpha").set_value(alpha).run()
        assert_clean(at)
        sc = model.trace(x, threshold=alpha).scales[0]
        assert metric(at, "Mask cells") == f"{int(sc.mask.sum())}/{sc.mask.numel()}"
        assert metric(at, "Kept cells") == str(int(sc.component.sum()))
        x0, y0, x1, y1 = sc.proposal_box[0].tolist()
        assert metric(at, "Box size (this scale's px)") == f"{x1 - x0:.0f}×{y1 - y0:.0f}"
        assert f"4 · its box ({x0:.0f}, {y0:.0f}) → ({x1:.0f}, {y1:.0f})" in image_captions(at)
        seen.add(metric(at, "Mask cells"))
        assert any("α update" in c and " ms" in c for c in captions(at))
    assert len(seen) > 1, "the chosen α values should change the mask of this model"
    at.radio(key="dppm_step").set_value("Scale 2").run()
    assert_clean(at)
    assert headlines(at, "Scale 2 top-1") == [top1_text(model.trace(x, threshold=1.3).scales[1].probs, at_classes(env))]


def at_classes(env) -> list[str]:
    return fgvc_core.build_dataset("synth", env["FGVC_DATA_ROOT"], "test").classes


# ----------------------------------------------------------------------------------------------- rollout
def naive_rollout(attentions, fusion: str, discard: float, query: str, start: int) -> torch.Tensor:
    """The matrix chain R = Â_L ⋯ Â_start written out, one image, for comparison with the page."""
    n = attentions[0].shape[-1]
    chain = torch.eye(n, dtype=torch.float64)
    for a in attentions[start:]:
        a = a[0].double()
        a = {"mean": a.mean(0), "max": a.amax(0), "min": a.amin(0)}[fusion]
        k = int((n - 1) * discard)
        if k:
            a = a.clone()
            for row in a:
                lowest = torch.argsort(row[1:])[:k] + 1
                row[lowest] = 0.0
        a = a + torch.eye(n, dtype=torch.float64)
        a = a / a.sum(dim=1, keepdim=True)
        chain = a @ chain
    row = chain[0] if query == "cls" else chain.mean(0)
    return row[1:] / row[1:].max()


def test_rollout_controls_change_the_map_as_a_naive_chain_says(env):
    at = open_app("rollout")
    model, _, x = model_and_input(env, "rams_trans", at)
    attentions = model.trace(x).scales[0].attentions
    means = set()
    for fusion, discard, start, query in (("mean", 0.0, 1, "cls"), ("max", 0.5, 2, "mean"), ("min", 0.25, 1, "cls")):
        at.selectbox(key="ro_fusion").set_value(fusion)
        at.slider(key="ro_discard").set_value(discard)
        at.slider(key="ro_start").set_value(start)
        at.radio(key="ro_query").set_value(query).run()
        assert_clean(at)
        expected = naive_rollout(attentions, fusion, discard, query, start - 1)
        assert metric(at, "Rollout mean (max = 1)") == f"{float(expected.mean()):.4f}"
        means.add(metric(at, "Rollout mean (max = 1)"))
    assert len(means) == 3


# ------------------------------------------------------------------------------------------------- CRAM
def test_cram_delta_and_omega_update_S_and_the_prediction_as_a_full_pass_says(env):
    at = open_app("cram")
    model, meta, x = model_and_input(env, "cra_smra", at)
    counts = set()
    for delta, omega in ((0.5, 0.5), (0.95, 0.5), (0.7, 0.0)):
        at.slider(key="cram_delta").set_value(delta)
        at.slider(key="cram_omega").set_value(omega).run()
        assert_clean(at)
        full = model.trace(x, delta=delta, omega=omega)  # no cache: the page's cached path must agree
        table = at.dataframe[0].value
        for row, stage in zip(table.to_dict("records"), full.stages):
            i_star = torch.softmax(stage.importance[0].double(), dim=0)
            naive = int((i_star >= delta * i_star.max()).sum())
            assert row["suppressed"] == naive == int(stage.suppressed_channels.sum())
            s = torch.where(i_star >= delta * i_star.max(), omega, 1.0)
            assert float(row["mean S"]) == pytest.approx(float(s.mean()), abs=1e-4)
        assert headlines(at, "Combined prediction") == [top1_text(full.probs, meta["classes"])]
        counts.add(tuple(table["suppressed"]))
        assert any(re.search(r"δ/ω update: computed in [\d.]+ ms", c) for c in captions(at))
    assert len(counts) > 1


# ---------------------------------------------------------------------------------------------- Grad-CAM
def test_gradcam_method_target_and_delta_give_the_core_maps(env):
    at = open_app("gradcam")
    model, meta, x = model_and_input(env, "cra_smra", at)
    target_name = meta["classes"][2]
    at.sidebar.selectbox(key="target_class").set_value(target_name)
    at.selectbox(key="cam_method").set_value("finercam")
    at.slider(key="cam_delta").set_value(0.6).run()
    assert_clean(at)
    expected = stage_cams(model, x, target_class=2, method="finercam", delta=0.6)
    stage_captions = image_captions(at)
    shown = shown_peaks([t for t in flatten(stage_captions) if t.startswith("stage ")])
    assert shown == [peak_cell(expected[s][0]) for s in (3, 4, 5)]
    assert any(target_name in m.value for m in at.markdown)
    assert metric(at, "L_div = 1 − h/3") == f"{float(model.trace(x, delta=0.6).l_div_per_image[0]):.4f}"
    # The ViT CAM below uses the same target (finercam is CNN-only there: Grad-CAM with a note).
    from fgvc_core.explain.attribution.vit_cam import rams_trans_cam

    rams, _, xr = model_and_input(env, "rams_trans", at)
    vit = rams_trans_cam(rams, xr, target=2, method="gradcam")[0]
    assert shown_peaks([t for t in flatten(stage_captions) if t.startswith("RAMS-Trans")]) == [peak_cell(vit)]


def flatten(items) -> list[str]:
    out = []
    for item in items:
        out += list(item) if isinstance(item, (list, tuple)) else [item]
    return out


def image_captions(at: AppTest) -> list[str]:
    return [c for image in at.image for c in image.captions if c]


# ------------------------------------------------------------------------------------------------ uploads
def png_bytes(seed: int = 0, size: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_good_upload_is_explained_and_a_corrupt_one_shows_the_error(env):
    at = open_app()
    at.sidebar.radio(key="image_source").set_value("Upload").run()
    assert_clean(at)
    good = png_bytes()
    at.sidebar.file_uploader[0].set_value(("bird.png", good, "image/png")).run()
    assert_clean(at)
    model, meta = fgvc_core.load_checkpoint(Path(env["FGVC_CHECKPOINT_DIR"]) / "cra_smra_demo.safetensors")
    x = fgvc_core.build_transform(meta)(fgvc_core.load_image(good))[None]
    assert headlines(at, "Combined prediction")[1] == top1_text(model.trace(x).probs, meta["classes"])
    at.sidebar.file_uploader[0].set_value(("broken.png", b"\x89PNG\r\n\x1a\n not really", "image/png")).run()
    assert not at.exception
    broken = io.BytesIO(b"\x89PNG\r\n\x1a\n not really")
    broken.name = "broken.png"
    with pytest.raises(fgvc_core.ImageError) as info:
        fgvc_core.load_image(broken)
    assert [e.value for e in at.sidebar.error] == [str(info.value)]  # load_image's own one-line message
    assert any("bird.png" in c for c in captions(at.sidebar))  # the last good upload is still shown
    for page in ("cram", "dppm"):  # and the app keeps working on it
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception and not at.main.error


# ------------------------------------------------------------------------------------------- checkpoints
def test_typed_checkpoint_paths_are_validated_with_one_line_errors(env, tmp_path, monkeypatch):
    # Issue 15: detailed reasons only inside an allowed root (outside: tests/test_hostile_app.py), so allow tmp_path.
    monkeypatch.setenv("FGVC_CHECKPOINT_ROOTS", str(tmp_path))
    at = open_app("dppm")
    cra = Path(env["FGVC_CHECKPOINT_DIR"]) / "cra_smra_demo.safetensors"
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "lonely.safetensors").write_bytes(b"x")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"junk")
    (tmp_path / "corrupt.json").write_text((Path(env["FGVC_CHECKPOINT_DIR"]) / "rams_trans_demo.json").read_text())
    at.sidebar.selectbox(key="model_rams_trans").set_value("__typed__").run()
    cases = {
        str(tmp_path / "missing.safetensors"): "no such file",
        str(tmp_path): "is a folder",
        str(tmp_path / "notes.txt"): "not a .safetensors checkpoint",
        str(tmp_path / "lonely.safetensors"): "has no sidecar lonely.json",
        str(cra): "holds a CRA-SMRA model, not RAMS-Trans",
    }
    for typed, message in cases.items():
        at.sidebar.text_input(key="path_rams_trans").set_value(typed).run()
        assert not at.exception
        assert any(message in e.value for e in at.sidebar.error), (typed, [e.value for e in at.sidebar.error])
        assert all("\n" not in e.value for e in at.error)
    at.sidebar.text_input(key="path_rams_trans").set_value(str(corrupt)).run()
    assert not at.exception
    assert any("corrupt.safetensors" in e.value for e in at.main.error)  # the page says why it cannot load
    with pytest.raises(CheckpointError):
        fgvc_core.load_checkpoint(corrupt)


def test_no_checkpoint_at_all_gives_clear_messages_on_every_page(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FGVC_CHECKPOINT_DIR", str(tmp_path / "empty"))
    at = open_app_unchecked()
    for page in PAGES:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, page
    at.switch_page("pages/cram.py").run()
    assert [e.value for e in at.main.error] == [
        "No CRA-SMRA checkpoint in " + str(tmp_path / "empty") + ": train one on the Tune page (or `make app` "
        "after the demo training), or type a path in the sidebar"
    ]
    at.switch_page("pages/tune.py").run()  # the γ tab reads ablation tables now (tests/test_app_ablation.py)
    assert any(e.value.startswith("No CRA-SMRA checkpoint in") for e in at.error)  # the test-time δ sweep


def test_no_benchmark_and_no_upload_asks_for_an_image(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FGVC_DATA_ROOT", str(tmp_path / "nothing"))
    at = open_app_unchecked()
    assert any("No benchmark" in w.value for w in at.sidebar.warning)
    for page in ("overview", "dppm", "cram", "gradcam", "benchmark"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, page
    at.switch_page("pages/dppm.py").run()
    assert [i.value for i in at.info] == ["Choose a benchmark sample or upload an image in the sidebar."]


def open_app_unchecked() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def test_unexpected_errors_become_one_line_messages():
    def page():
        from fgvc_core.app.guard import page_guard

        with page_guard():
            raise RuntimeError("boom\nwith a second line")

    at = AppTest.from_function(page).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Unexpected error (RuntimeError): boom. The details are in the server log."]


def test_listing_and_validation_without_streamlit(env, tmp_path):
    paths = app_paths()
    found = ckpts.list_checkpoints(paths)
    assert [(i.kind, i.source) for i in found[:2]] == [("rams_trans", "demo"), ("cra_smra", "demo")]
    assert sorted(p.gamma for p in ckpts.gamma_sweep(paths)) == [0.0, 1.0]
    assert ckpts.gamma_sweep(paths)[1].metrics == {"combined_top1": 0.5, "stage5_top1": 0.25}
    with pytest.raises(CheckpointError, match="type the path"):
        ckpts.validate_checkpoint_path("  ", paths.root)


# ------------------------------------------------------------------------------------------------- tune
def test_delta_sweep_equals_per_image_full_passes(env):
    model, meta = fgvc_core.load_checkpoint(Path(env["FGVC_CHECKPOINT_DIR"]) / "cra_smra_demo.safetensors")
    dataset = fgvc_core.build_dataset("synth", env["FGVC_DATA_ROOT"], "test")
    fractions = []
    result = sweeps.delta_sweep(
        model, dataset, meta["preprocess"], [0.5, 0.9], limit=5, batch_size=2, progress=fractions.append
    )
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    transform = fgvc_core.build_transform(meta)
    order = sweeps.sample_indices(len(dataset), 5)
    for d, delta in enumerate((0.5, 0.9)):
        correct, hits = [], []
        for i in order:
            image, label = dataset[i]
            x = transform(image)[None]
            correct.append(int(model.trace(x, delta=delta).probs.argmax()) == label)
            cam = stage_cams(model, x, delta=delta, stages=(5,))[5][0]
            r, c = peak_cell(cam)
            boxes = fgvc_core.explain.scoring.metrics.part_boxes_to_input(
                dataset.annotation(i).deciding_boxes.numpy(), image.size, meta["preprocess"]
            )
            px, py = c + 0.5, r + 0.5
            hits.append(any(bx <= px <= bx + bw and by <= py <= by + bh for bx, by, bw, bh in boxes))
        assert result.metrics["top-1 combined"][d] == pytest.approx(np.mean(correct))
        assert result.metrics["pointing stage 5"][d] == pytest.approx(np.mean(hits))
    with pytest.raises(ConfigError):
        sweeps.delta_sweep(model, dataset, meta["preprocess"], [], limit=2)


def test_delta_sweep_form_shows_a_table(env):
    at = open_app("tune")
    at.number_input(key="sweep_samples").set_value(4)
    at.select_slider(key="sweep_step").set_value(0.25)
    submit = [b for b in at.button if b.label == "Run the δ sweep"][0]
    submit.click().run()
    assert_clean(at)
    table = at.dataframe[-1].value
    assert list(table["δ"]) == [0.5, 0.75, 1.0]
    assert set(table["top-1 combined"]) <= {0.0, 0.25, 0.5, 0.75, 1.0}


def test_training_form_starts_a_background_run_and_its_checkpoint_appears(env):
    at = open_app("tune")
    at.number_input(key="train_max_steps").set_value(2)
    at.number_input(key="train_samples").set_value(32)
    [b for b in at.button if b.label == "Start training in the background"][0].click().run()
    assert_clean(at)
    runs = training.list_runs(app_paths())
    assert len(runs) == 1
    deadline = time.time() + 240
    while training.run_state(runs[0]).active and time.time() < deadline:
        time.sleep(1)
    state = training.run_state(runs[0])
    assert state.state == "done", state.log_tail
    assert state.status["step"] == state.status["total_steps"] == 2
    at.run()
    assert_clean(at)
    assert any("Done. New CRA-SMRA checkpoint" in s.value for s in at.success)
    options = at.sidebar.selectbox(key="model_cra_smra").options
    assert any("trained in the app" in o for o in options)
    with pytest.raises(ConfigError, match="train.output"):
        training.start_training(training.recipes(app_paths())[0], ["train.output=x"], app_paths())


# ------------------------------------------------------------------------------ issue 13: state bugs of Tune
def start_long_run(at: AppTest) -> Path:
    """Submit the form for a run that outlasts the test (it is stopped by the caller)."""
    at.number_input(key="train_max_steps").set_value(100_000)
    at.number_input(key="train_samples").set_value(100_000)
    [b for b in at.button if b.label == "Start training in the background"][0].click().run()
    assert_clean(at)
    return training.list_runs(app_paths())[0]  # newest first


def test_the_monitor_shows_the_run_just_started_not_the_previous_one(env):
    at = open_app("tune")
    previous = training.list_runs(app_paths())
    assert previous, "runs after the training test above"
    assert at.selectbox(key="train_run_pick").value == str(previous[0])
    new = start_long_run(at)
    try:
        assert new not in previous
        assert at.selectbox(key="train_run_pick").value == str(new)
        assert any(p.text.startswith(("starting", "running")) for p in at.get("progress"))
    finally:
        training.stop_training(new)


def test_stop_this_run_says_stopped_not_an_empty_log_error(env):
    at = open_app("tune")
    run = start_long_run(at)
    at.button(key="stop_run").click().run()
    assert_clean(at)  # was a red "The run stopped. Last lines of its log:" and "(empty log)"
    state = training.run_state(run)
    assert state.state == "stopped" and training.run_state(run).job.get("stopped")
    step = (state.status or {}).get("step", 0)
    total = (state.status or {}).get("total_steps", "?")
    assert [i.value for i in at.info] == [
        f"The run was stopped at step {step}/{total}. Its last checkpoint, if any, is in its folder."
    ]
