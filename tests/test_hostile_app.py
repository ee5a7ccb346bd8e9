"""Issue 15, "The app runs on a server": what a visitor's browser can reach, tried as an attacker would.

Each case asserts the one-line message the visitor sees, that no traceback or Streamlit exception element reaches
the page, and that nothing was started or written. The table of cases is docs/hostile_inputs/app.md.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import fgvc_core
from fgvc_core.app import training
from fgvc_core.app.allowed import NOT_AVAILABLE, PathNotAvailable, allowed_roots, confine, redact_paths
from fgvc_core.app.checkpoints import list_checkpoints, validate_checkpoint_path
from fgvc_core.app.images import check_upload_name, uploaded_image
from fgvc_core.app.settings import REPO_ROOT, app_paths
from fgvc_core.app.views import input_text
from fgvc_core.data.transforms import preprocess_config
from fgvc_core.errors import ConfigError, ImageError
from fgvc_core.models.cra_smra.trace import ALL_SUPPRESSED_DELTA
from tests.app_fixtures import app_environment, sample_box

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120
START = "Start training in the background"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_app")
    with app_environment(root) as variables:
        yield {"root": root, **variables}


@pytest.fixture
def outside(tmp_path):
    """A folder outside every allowed root holding a real checkpoint, a folder, a text file and a broken name."""
    src = Path(os.environ["FGVC_CHECKPOINT_DIR"])
    for name in ("rams_trans_demo.safetensors", "rams_trans_demo.json"):
        shutil.copy(src / name, tmp_path / name)
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("secret")
    return tmp_path


def open_app(page: str = "overview") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page != "overview":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


# ---------------------------------------------------------------------------------------- allowed roots (core)
def test_confine_gives_one_message_whatever_the_outside_path_is(env, outside):
    roots = allowed_roots().readable_checkpoints
    inside = Path(env["FGVC_CHECKPOINT_DIR"]) / "rams_trans_demo.safetensors"
    assert confine(str(inside), roots) == inside.resolve()
    loop = outside / "loop"
    loop.symlink_to(loop)
    cases = [
        outside / "rams_trans_demo.safetensors",  # a real checkpoint
        outside / "missing.safetensors",
        outside / "folder",
        outside / "notes.txt",
        loop,  # a symlink loop must not say "loop"
        Path(env["FGVC_CHECKPOINT_DIR"]) / ".." / ".." / outside.name,  # .. out of a root
        "/etc/passwd",
    ]
    for case in cases:
        with pytest.raises(PathNotAvailable) as info:
            confine(str(case), roots)
        assert str(info.value) == f"{case}: {NOT_AVAILABLE}"
    with pytest.raises(PathNotAvailable, match=f"^a\\?b: {NOT_AVAILABLE}$"):
        confine("a\0b", roots)


def test_a_symlink_inside_a_root_that_points_outside_is_refused(env, outside):
    link = Path(env["FGVC_CHECKPOINT_DIR"]) / "escape.safetensors"
    link.symlink_to(outside / "rams_trans_demo.safetensors")
    (Path(env["FGVC_CHECKPOINT_DIR"]) / "escape.json").symlink_to(outside / "rams_trans_demo.json")
    try:
        with pytest.raises(PathNotAvailable, match=f"escape.safetensors: {NOT_AVAILABLE}$"):
            validate_checkpoint_path(str(link), REPO_ROOT)
        assert "escape" not in {info.path.stem for info in list_checkpoints(app_paths())}
    finally:
        link.unlink()
        (Path(env["FGVC_CHECKPOINT_DIR"]) / "escape.json").unlink()


def test_a_sidecar_symlinked_out_of_the_root_is_refused(env, outside, tmp_path_factory):
    folder = Path(env["FGVC_CHECKPOINT_DIR"]) / "side"
    folder.mkdir()
    shutil.copy(Path(env["FGVC_CHECKPOINT_DIR"]) / "rams_trans_demo.safetensors", folder / "m.safetensors")
    (folder / "m.json").symlink_to(outside / "rams_trans_demo.json")
    with pytest.raises(PathNotAvailable, match=f"m.safetensors: {NOT_AVAILABLE}$"):
        validate_checkpoint_path(str(folder / "m.safetensors"), REPO_ROOT)
    assert "m" not in {info.path.stem for info in list_checkpoints(app_paths())}
    shutil.rmtree(folder)


def test_roots_come_from_pathsep_separated_variables(env, tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    monkeypatch.setenv("FGVC_CHECKPOINT_ROOTS", os.pathsep.join([str(a), "", str(b)]))
    monkeypatch.setenv("FGVC_DATA_ROOTS", "data")  # relative: from the repository
    monkeypatch.setenv("FGVC_RUNS_ROOT", str(tmp_path / "runs"))
    roots = allowed_roots()
    # The folders the app lists are always allowed: it must be able to open what it shows.
    assert roots.checkpoints == (a.resolve(), b.resolve(), Path(env["FGVC_CHECKPOINT_DIR"]).resolve())
    assert roots.data == ((REPO_ROOT / "data").resolve(), Path(env["FGVC_DATA_ROOT"]).resolve())
    assert roots.runs == ((tmp_path / "runs").resolve(), Path(env["FGVC_RUNS_DIR"]).resolve())
    monkeypatch.delenv("FGVC_CHECKPOINT_ROOTS")
    assert allowed_roots().checkpoints[0] == (REPO_ROOT / "checkpoints").resolve()


def test_redact_paths_hides_server_paths_and_keeps_the_rest(env):
    inside = Path(env["FGVC_DATA_ROOT"]) / "test"
    text = f"cannot read '/etc/shadow' or {inside}/x.png: step 1/2 done in /tmp."
    assert redact_paths(text, allowed_roots().every) == (
        f"cannot read '<server path>' or {inside}/x.png: step 1/2 done in <server path>."
    )


# ------------------------------------------------------------------------------- typed checkpoint box (app)
def test_typed_checkpoint_outside_the_roots_reveals_nothing(env, outside):
    at = open_app("dppm")
    at.sidebar.selectbox(key="model_rams_trans").set_value("__typed__").run()
    for typed in ("rams_trans_demo.safetensors", "missing.safetensors", "folder", "notes.txt"):
        path = str(outside / typed)
        at.sidebar.text_input(key="path_rams_trans").set_value(path).run()
        assert not at.exception
        assert [e.value for e in at.sidebar.error] == [f"{path}: {NOT_AVAILABLE}"]
        assert errors(at.main) == [f"RAMS-Trans: {path}: {NOT_AVAILABLE}"]  # and nothing was loaded


# --------------------------------------------------------------------------------------------- uploads (app)
@pytest.mark.parametrize(
    ("name", "data"),
    [("drawing.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>"), ("photo.heic", b"\x00\x00\x00\x18ftypheic")],
)
def test_upload_of_a_type_the_app_does_not_read_shows_a_clear_error(env, name, data):
    at = open_app()
    at.sidebar.radio(key="image_source").set_value("Upload").run()
    at.sidebar.file_uploader[0].set_value((name, data, "application/octet-stream")).run()
    assert not at.exception, [e.value for e in at.exception]  # was Streamlit's StreamlitAPIException element
    suffix = Path(name).suffix
    expected = f"{name}: {suffix} files are not supported; upload PNG, JPEG, WebP, BMP, GIF or TIFF"
    assert [e.value for e in at.sidebar.error] == [expected]


def test_upload_names_are_checked_before_decoding():
    check_upload_name("bird.JPG")
    with pytest.raises(ImageError, match="^README: files without a suffix are not supported; upload PNG"):
        check_upload_name("README")
    with pytest.raises(ImageError, match=r"^a\?.png: a file name with a NUL byte is not accepted$"):
        check_upload_name("a\0.png")
    with pytest.raises(ImageError, match="^uploaded file 'fake.png' is not an image"):  # the name alone is not enough
        uploaded_image(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "fake.png")


# ------------------------------------------------------------------------------------- training form (core)
@pytest.mark.parametrize(
    "override",
    [
        "data.root=/etc",
        "data.name=folder",
        "model.pretrained=/etc/passwd",
        " data.root = /tmp",
        "model={pretrained: /etc/passwd}",
        "train.workers=64",
        "train.resume=true",
        "--config=/etc/passwd",
    ],
)
def test_only_whitelisted_keys_can_be_overridden_and_nothing_starts(env, override):
    paths = app_paths()
    before = sorted(paths.runs.iterdir()) if paths.runs.is_dir() else []
    with pytest.raises(ConfigError) as info:
        training.start_training(training.recipes(paths)[0], [override], paths)
    key = override.split("=")[0].strip()
    assert str(info.value) == (
        f"{key} cannot be set from the app; the keys it lets you override are {', '.join(training.OVERRIDABLE)}"
    )
    assert (sorted(paths.runs.iterdir()) if paths.runs.is_dir() else []) == before


@pytest.mark.parametrize(
    ("override", "cap"),
    [("train.batch_size=100000", 256), ("train.epochs=5000", 1000), ("train.max_steps=2000000", 1_000_000),
     ("data.train_samples=10000000", 200_000)],
)  # fmt: skip
def test_whitelisted_values_above_the_server_caps_are_refused_and_nothing_starts(env, override, cap):
    paths = app_paths()
    before = sorted(paths.runs.iterdir()) if paths.runs.is_dir() else []
    with pytest.raises(ConfigError) as info:
        training.start_training(training.recipes(paths)[0], [override], paths)
    key = override.split("=")[0]
    assert str(info.value).startswith(f"{key}=") and str(info.value).endswith(
        f"is more than this server allows (at most {cap})"
    )
    assert (sorted(paths.runs.iterdir()) if paths.runs.is_dir() else []) == before


def test_overrides_are_normalised_and_train_output_keeps_its_message():
    assert training.checked_overrides([" model.gamma = 0.5 ", "", "# a comment", "train.epochs=2"]) == [
        "model.gamma=0.5",
        "train.epochs=2",
    ]
    with pytest.raises(ConfigError, match="^the app chooses train.output itself"):
        training.checked_overrides(["train.output=/tmp/x"])
    with pytest.raises(ConfigError, match="^override 'model.gamma' must look like section.key=value$"):
        training.checked_overrides(["model.gamma"])


def test_a_recipe_whose_paths_leave_the_roots_does_not_start(env, tmp_path, monkeypatch):
    paths = app_paths()
    recipe = training.recipes(paths)[0]
    for key, value, message in (
        ("data", {"root": "/etc"}, "this recipe's data.root: not available here"),
        ("model", {"pretrained": "/etc/passwd"}, "this recipe's model.pretrained: not available here"),
    ):
        config = json.loads(json.dumps(fgvc_core.engine.config.load_config(recipe)))
        config[key].update(value)
        with pytest.raises(PathNotAvailable, match=f"^{message}$"):
            training.check_recipe_paths(config, allowed_roots(), REPO_ROOT)
    with pytest.raises(ConfigError, match="^elsewhere.yaml is not one of the recipes this app offers$"):
        training.start_training(tmp_path / "elsewhere.yaml", [], paths)


def fake_run(runs: Path, name: str, status: dict | None, log: str = "", pid: int | None = None) -> Path:
    run = runs / name
    run.mkdir(parents=True)
    (run / training.JOB_FILE).write_text(json.dumps({"pid": pid or 2**22 + 17, "command": [], "recipe": "x"}))
    if status is not None:
        (run / training.STATUS_FILE).write_text(json.dumps(status))
    (run / training.LOG_FILE).write_text(log)
    return run


def test_the_run_cap_refuses_a_second_run(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FGVC_RUNS_DIR", str(tmp_path / "runs"))
    paths = app_paths()
    fake_run(paths.runs, "20990101-000000-busy", None, pid=os.getpid())  # alive and without status: starting
    recipe = training.recipes(paths)[0]
    with pytest.raises(training.RunLimitReached) as info:
        training.start_training(recipe, [], paths)
    assert str(info.value) == (
        "1 training run is already running on this server (at most 1 at a time); wait for it to finish or stop it below"
    )
    assert [p.name for p in paths.runs.iterdir() if not p.name.startswith(".")] == ["20990101-000000-busy"]
    monkeypatch.setenv("FGVC_MAX_RUNS", "0")
    with pytest.raises(training.RunLimitReached, match=r"^training from the app is switched off on this server"):
        training.start_training(recipe, [], paths)
    monkeypatch.setenv("FGVC_MAX_RUNS", "two")
    with pytest.raises(ConfigError, match="^FGVC_MAX_RUNS must be a whole number >= 0, got 'two'$"):
        training.start_training(recipe, [], paths)


TRACEBACK_LOG = """step 3 loss 1.2
Traceback (most recent call last):
  File "/srv/fgvc/fgvc_core/engine/trainer.py", line 120, in run_training
    batch = next(loader)
            ^^^^^^^^^^^^
  File "/srv/fgvc/fgvc_core/data/images.py", line 40, in load_image
    raise ImageError(f"cannot read {path}")
fgvc_core.errors.ImageError: cannot read /srv/private/cub/0001.jpg (truncated)
"""


def test_failure_reason_is_one_line_without_traceback_or_server_paths(env):
    roots = allowed_roots().every
    assert training.failure_reason(TRACEBACK_LOG, None, roots) == ("ImageError: cannot read <server path> (truncated)")
    status = {"kind": "failed", "message": "RuntimeError: boom at /opt/secret/x\n  File '/opt/y.py'"}
    assert training.failure_reason(TRACEBACK_LOG, status, roots) == "RuntimeError: boom at <server path>"
    assert training.failure_reason("error: unknown key(s) in train: foo\n", None, roots) == (
        "unknown key(s) in train: foo"
    )
    assert training.failure_reason("", None, roots) == "no error message in its log"
    assert len(training.failure_reason("ValueError: " + "x" * 1000, None, roots)) == training.REASON_LIMIT


# ------------------------------------------------------------------------------------- training form (app)
def test_the_form_refuses_a_path_override_with_one_line_and_starts_nothing(env):
    at = open_app("tune")
    runs = Path(env["FGVC_RUNS_DIR"])
    before = sorted(runs.iterdir()) if runs.is_dir() else []
    for override in ("data.root=/etc", "model.pretrained=/etc/passwd"):
        at.text_area(key="train_extra").set_value(override)
        [b for b in at.button if b.label == START][0].click().run()
        assert not at.exception
        key = override.split("=")[0]
        assert errors(at) == [f"{key} cannot be set from the app; the keys it lets you override are "
                              f"{', '.join(training.OVERRIDABLE)}"]  # fmt: skip
        assert (sorted(runs.iterdir()) if runs.is_dir() else []) == before


def test_a_failed_run_shows_a_short_reason_not_its_log(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FGVC_RUNS_DIR", str(tmp_path / "runs"))
    status = {"kind": "failed", "step": 3, "total_steps": 10, "epoch": 0, "message": ""}
    fake_run(tmp_path / "runs", "20990101-000000-broken", status, TRACEBACK_LOG)
    at = open_app("tune")
    assert errors(at) == ["The run failed at step 3: ImageError: cannot read <server path> (truncated)"]
    shown = " ".join([c.value for c in at.code] + [m.value for m in at.markdown] + errors(at))
    assert "Traceback" not in shown and "/srv/" not in shown


def test_the_form_says_when_the_run_cap_is_reached(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FGVC_RUNS_DIR", str(tmp_path / "runs"))
    busy = fake_run(tmp_path / "runs", "20990101-000000-busy", None, pid=os.getpid())
    at = open_app("tune")
    [b for b in at.button if b.label == START][0].click().run()
    assert not at.exception
    assert errors(at) == [training.run_limit_message(1, 1)]
    assert at.selectbox(key="train_run_pick").value == str(busy)  # the running run stays on the page
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")) == [busy.name]


# ------------------------------------------------------------------------------- issue 11: CRAM's δ range
def test_delta_up_to_one_over_e_suppresses_every_channel_and_the_trace_counts_it(env):
    model, meta = fgvc_core.load_checkpoint(Path(env["FGVC_CHECKPOINT_DIR"]) / "cra_smra_demo.safetensors")
    image = fgvc_core.build_dataset("synth", env["FGVC_DATA_ROOT"], "test")[0][0]
    x = fgvc_core.build_transform(meta)(image)[None]
    for stage in model.trace(x, delta=ALL_SUPPRESSED_DELTA).stages:
        n, channels = stage.suppressed_count(0)
        assert n == channels == stage.importance.shape[1]
        bound = stage.all_suppressed_delta(0)
        i = stage.importance[0].double()
        assert bound == pytest.approx(float(((i - i.max()).exp()).min()), rel=1e-5) and bound > ALL_SUPPRESSED_DELTA
    above = model.trace(x, delta=0.95)
    for stage in above.stages:
        assert stage.suppressed_count(0) == (int(stage.suppressed_channels[0].sum()), stage.importance.shape[1])


def test_cram_page_limits_delta_and_shows_n_of_c_per_stage(env):
    at = open_app("cram")
    slider = at.slider(key="cram_delta")
    assert slider.min == 0.37 > ALL_SUPPRESSED_DELTA and "1/e" in slider.help
    at.slider(key="cram_delta").set_value(0.8).run()
    model, meta = fgvc_core.load_checkpoint(Path(env["FGVC_CHECKPOINT_DIR"]) / "cra_smra_demo.safetensors")
    index = sample_box(at).value
    image = fgvc_core.build_dataset("synth", env["FGVC_DATA_ROOT"], "test")[index][0]
    trace = model.trace(fgvc_core.build_transform(meta)(image)[None], delta=0.8)
    expected = []
    for stage in trace.stages:
        n, c = int(stage.suppressed_channels[0].sum()), stage.importance.shape[1]
        expected.append(f"stage {stage.stage}: {n} of {c} channels suppressed" + (" (all)" if n == c else ""))
    assert " · ".join(expected) in [c.value for c in at.caption]
    table = at.dataframe[0].value
    assert list(table["all suppressed for δ ≤"]) == [f"{s.all_suppressed_delta(0):.3f}" for s in trace.stages]


def test_the_delta_sweep_is_labelled_a_test_time_sweep_of_one_model(env):
    at = open_app("tune")
    assert "**Test-time δ sweep of one trained model**" in [m.value for m in at.markdown]
    assert not any("paper Table 4" in c.value and "not" not in c.value for c in at.caption)
    assert at.slider(key="sweep_range").min == 0.4


# ------------------------------------------------------------------------ issue 11: how an upload is resized
@pytest.mark.parametrize(
    ("resize_mode", "kept"), [(None, "50%"), ("short_side", "50%"), ("square", "66%")]
)  # fmt: skip
def test_the_page_says_how_an_image_is_resized_and_cropped(resize_mode, kept):
    pp = preprocess_config("cra_smra", 448)
    pp.pop("resize_mode")
    if resize_mode is not None:  # a sidecar written before resize_mode existed has the old short-side resize
        pp["resize_mode"] = resize_mode
    loaded = SimpleNamespace(preprocess=pp, kind="cra_smra")
    image = SimpleNamespace(image=Image.new("RGB", (800, 600)))
    first = "resized to 550x550 (aspect ratio not kept)" if resize_mode == "square" else (
        "short side resized to 550 (aspect ratio kept)"
    )  # fmt: skip
    assert input_text(loaded, image) == (
        f"Input of this CRA-SMRA checkpoint: {first}, then centre-cropped to 448x448. "
        f"The network sees {kept} of this 800×600 px image."
    )


def test_every_model_page_states_the_input_transform(env):
    at = open_app()
    note = (
        "Input of this CRA-SMRA checkpoint: resized to 64x64 (aspect ratio not kept), no crop. "
        "The network sees 100% of this 64×64 px image."
    )
    assert note in [c.value for c in at.caption]
    for page in ("cram", "gradcam"):
        at.switch_page(f"pages/{page}.py").run()
        assert note in [c.value for c in at.caption], page
