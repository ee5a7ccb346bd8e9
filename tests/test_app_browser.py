"""The app in a real browser: ``streamlit run app.py`` headless, driven by Chromium through playwright.

It opens every page, uploads an image through the sidebar uploader (the trap AppTest cannot see: an uploader in
the navigation entry script never receives its file in a browser), moves sliders with the keyboard, and saves a
screenshot of every page. A second session opens a CUB-layout fixture dataset and a RAMS-Trans checkpoint trained on
it through the sidebar pickers, evaluates it, clicks a confusion-matrix cell, opens an image from the misclassified
gallery and draws the ground-truth parts on its rollout.

With the demo checkpoints in ``checkpoints/`` it explains them, and the screenshots go to ``docs/screenshots/``
(the README shows them); without them (a fresh clone before the demo training) it uses tiny checkpoints and keeps
its screenshots in a temporary folder. ``FGVC_SCREENSHOT_DIR`` overrides where they go. In CI (``CI=true``) a
missing Chromium is a failure, elsewhere a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from fgvc_core.app.evaluation_cache import Evaluation
from fgvc_core.testing.app_server import AppDidNotStart, streamlit_server
from tests.app_fixtures import write_app_env, write_cub_checkpoint

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = (  # (sidebar link text, screenshot name, url path)
    ("DPPM scales", "dppm", "dppm"),
    ("Attention rollout", "rollout", "rollout"),
    ("CRAM channel masks", "cram", "cram"),
    ("Per-stage Grad-CAM", "gradcam", "gradcam"),
    ("Tune δ/γ", "tune", "tune"),
    ("Benchmark", "benchmark", "benchmark"),
)
RUN_TIMEOUT_MS = 180_000


def _require_browser() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing in CI: tests/install_browser.sh should have installed it")
        pytest.skip(f"{CHROMIUM} not installed (tests/install_browser.sh installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api")


def _demo_ready() -> bool:
    names = ("rams_trans_demo", "cra_smra_demo")
    return all((REPO / "checkpoints" / f"{n}.safetensors").is_file() for n in names) and all(
        (REPO / "checkpoints" / f"{n}.json").is_file() for n in names
    )


@pytest.fixture(scope="module")
def app_setup(tmp_path_factory):
    """Environment for the server, the image to upload and the screenshot folder."""
    _require_browser()
    tmp = tmp_path_factory.mktemp("browser")
    env = dict(os.environ)
    if _demo_ready():
        env.update(FGVC_CHECKPOINT_DIR=str(REPO / "checkpoints"), FGVC_RUNS_DIR=str(tmp / "runs"))
        shots = REPO / "docs" / "screenshots"
        data = REPO / "data" / "synth"
        if not (data / "images.txt").is_file():  # a clean clone: a small benchmark of the same classes
            from fgvc_core.data.synth import write_benchmark

            data = write_benchmark(tmp / "synth", per_class=2, size=224, seed=1, progress=False)
        env["FGVC_DATA_ROOT"] = str(data)
    else:
        env.update(write_app_env(tmp / "env"))
        shots = tmp / "screenshots"
    cub = write_cub_checkpoint(tmp / "cub_fixture")
    env.update(
        FGVC_DATA_ROOTS=str(tmp / "cub_fixture"),
        FGVC_CHECKPOINT_ROOTS=str(tmp / "cub_fixture" / "checkpoints"),
        FGVC_EVAL_CACHE_DIR=str(tmp / "eval_cache"),
    )
    env["_cub_root"], env["_cub_checkpoint"] = str(cub["cub"].root), str(cub["checkpoint"])
    shots = Path(os.environ.get("FGVC_SCREENSHOT_DIR") or shots)
    shots.mkdir(parents=True, exist_ok=True)
    images = sorted((Path(env["FGVC_DATA_ROOT"]) / "images").rglob("*.jpg"))
    upload = tmp / "my_bird.jpg"
    shutil.copy(images[len(images) // 2], upload)
    return env, upload, shots, tmp


@pytest.fixture(scope="module")
def server(app_setup):
    env, _, _, tmp = app_setup
    try:
        with streamlit_server(REPO, env, tmp / "streamlit.log") as url:
            yield url
    except AppDidNotStart as exc:
        pytest.fail(str(exc))


def settle(page) -> None:
    """Wait for the connection, then for the script (or fragment) run that an action started to finish."""
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=RUN_TIMEOUT_MS)
    try:  # the run may start a moment after the action, or be over before we look
        page.wait_for_selector("[data-test-script-state='running']", timeout=1500)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError: it was quick
        pass
    page.wait_for_selector("[data-test-script-state='notRunning']", timeout=RUN_TIMEOUT_MS)
    page.wait_for_timeout(700)  # let images and plotly charts paint


def assert_no_traceback(page, where: str) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, f"exception shown on {where}"
    assert "Traceback (most recent call last)" not in page.content(), where


def move_slider(page, index: int, key: str, presses: int) -> tuple[float, float]:
    """Focus the ``index``-th slider of the main area, press an arrow key; its value before and after."""
    slider = page.locator("[data-testid='stMain'] [data-testid='stSlider'] input[type=range]").nth(index)
    before = slider.input_value()
    slider.focus()
    for _ in range(presses):
        page.keyboard.press(key)
    settle(page)
    after = slider.input_value()
    assert after != before, "the slider did not move"
    return float(before), float(after)


def screenshot(page, path: Path) -> None:
    """The whole page: the main area scrolls inside the window, so grow the window to its content first."""
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain] *')]"
        ".map(e => e.scrollHeight).filter(h => h < 20000), 1000)"
    )
    page.set_viewport_size({"width": 1500, "height": min(int(height) + 80, 5000)})
    page.wait_for_timeout(700)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1500, "height": 1000})


def test_a_page_url_opened_first_on_a_fresh_server_runs_through_app_py(app_setup):
    """Streamlit's legacy mode would run pages/cram.py alone (no navigation menu, no page config, no torch setting)."""
    from playwright.sync_api import sync_playwright

    env, _, _, tmp = app_setup
    with streamlit_server(REPO, env, tmp / "streamlit_direct.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(f"{url}/cram", timeout=RUN_TIMEOUT_MS)
        settle(page)
        page.wait_for_selector("h1:has-text('CRAM channel masks')", timeout=RUN_TIMEOUT_MS)
        nav = page.locator("[data-testid='stSidebarNav']")
        assert nav.get_by_text("Explore", exact=True).count() == 1, "app.py's st.navigation menu is missing"
        assert nav.get_by_text("app", exact=True).count() == 0, "the legacy pages/ menu is shown"
        assert_no_traceback(page, "the CRAM page opened by its URL")
        browser.close()


def test_every_page_upload_and_sliders_in_chromium(app_setup, server):
    from playwright.sync_api import sync_playwright

    _, upload, shots, _ = app_setup
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(server, timeout=RUN_TIMEOUT_MS)
        settle(page)
        assert_no_traceback(page, "overview")

        sidebar = page.locator("[data-testid='stSidebar']")
        sidebar.locator("[data-testid='stRadio'] label", has_text="Upload").click()
        settle(page)
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(upload))
        settle(page)
        # The uploaded file reached the app: the sidebar names it and the overview explains it.
        assert sidebar.get_by_text(upload.name).count() >= 1
        assert page.get_by_text("Combined prediction").count() == 2
        assert_no_traceback(page, "overview after upload")
        screenshot(page, shots / "overview.png")

        for link, name, path in PAGES:
            sidebar.locator(f"[data-testid='stSidebarNav'] a[href$='/{path}']").click()
            settle(page)
            assert page.url.endswith(f"/{path}"), (link, page.url)
            assert sidebar.get_by_text(upload.name).count() >= 1, f"the upload was lost on {name}"
            assert_no_traceback(page, name)
            if name == "dppm":
                before, after = move_slider(page, 0, "ArrowRight", 4)  # α: four steps of 0.05
                assert after == pytest.approx(before + 0.2)
                assert page.get_by_text("α update").count() == 1
            elif name == "cram":
                before, after = move_slider(page, 0, "ArrowLeft", 15)  # δ: fifteen steps of 0.01 down
                assert after == pytest.approx(before - 0.15)
                assert page.get_by_text("δ/ω update").count() == 1
            elif name == "gradcam":
                move_slider(page, 0, "ArrowRight", 2)  # opacity
                # A figure download is rendered on click, server-side, and arrives as a PNG file.
                with page.expect_download(timeout=RUN_TIMEOUT_MS) as download:
                    page.get_by_role("button", name="Stages side by side (PNG)").click()
                path = download.value.path()
                assert download.value.suggested_filename.endswith(".png")
                assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert_no_traceback(page, f"{name} after the slider")
            screenshot(page, shots / f"{name}.png")
        browser.close()


def choose(page, scope, label: str, option: str) -> None:
    """Open the selectbox labelled ``label`` inside ``scope`` and click its option ``option``."""
    scope.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option").filter(has_text=option).first.click()
    settle(page)


def selected(scope, label: str) -> str:
    """The shown value of the selectbox labelled ``label`` (a react-aria combobox input)."""
    return scope.get_by_role("combobox", name=label, exact=True).input_value()


def type_into(scope, label: str, text: str) -> None:
    field = scope.get_by_label(label, exact=True)
    field.fill(text)
    field.press("Enter")


def click_cell(page, chart, k: int, true: int, predicted: int) -> None:
    """Click the centre of cell (true, predicted) of a k×k plotly heatmap (rows top-down: its y axis is reversed)."""
    chart.scroll_into_view_if_needed()  # a click outside the viewport reaches nothing
    page.wait_for_timeout(300)
    box = chart.locator(".nsewdrag").first.bounding_box()
    x = box["x"] + (predicted + 0.5) * box["width"] / k
    y = box["y"] + (true + 0.5) * box["height"] / k
    page.mouse.move(x, y)
    page.wait_for_timeout(300)  # plotly's hover picks the point that the click then selects
    page.mouse.click(x, y)
    settle(page)


def test_cub_checkpoint_evaluation_confusion_click_gallery_and_parts_in_chromium(app_setup, server):
    from playwright.sync_api import expect, sync_playwright

    env, _, shots, tmp = app_setup
    cub_root, checkpoint = env["_cub_root"], env["_cub_checkpoint"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(server, timeout=RUN_TIMEOUT_MS)
        settle(page)
        sidebar = page.locator("[data-testid='stSidebar']")
        # The checkpoint by its typed path; its sidecar's data (loader, root, split) by the button beside the picker.
        choose(page, sidebar, "RAMS-Trans", "Type a path…")
        type_into(sidebar, "RAMS-Trans checkpoint path", checkpoint)
        use = sidebar.get_by_role("button", name="Use rams_trans_cub.safetensors's data (cub, test)")
        expect(use).to_be_visible(timeout=RUN_TIMEOUT_MS)
        settle(page)
        use.click()
        # wait for the state the click leads to: a rerun may start later than settle() looks for it
        expect(sidebar.get_by_role("combobox", name="Sample", exact=True)).to_have_value(
            re.compile(r"^Class_"), timeout=RUN_TIMEOUT_MS
        )
        settle(page)
        assert selected(sidebar, "Dataset") == "CUB-200-2011" and selected(sidebar, "Split") == "test"
        assert sidebar.get_by_label("Dataset root", exact=True).input_value() == cub_root
        assert_no_traceback(page, "sidebar with the CUB fixture")
        assert sidebar.locator("[data-testid='stAlertContentError']").count() == 0
        warnings = sidebar.locator("[data-testid='stAlertContentWarning']").all_inner_texts()
        assert not [w for w in warnings if "RAMS-Trans checkpoint" in w], warnings  # its classes are CUB's

        sidebar.locator("[data-testid='stSidebarNav'] a[href$='/evaluation']").click()
        settle(page)
        assert_no_traceback(page, "evaluation before running")
        page.get_by_role("button", name="Evaluate 8 images").click()
        settle(page)
        assert_no_traceback(page, "evaluation")
        assert page.get_by_text("computed now and cached on disk", exact=False).count() == 1
        # The folder also holds the familiarity (OOD) calibrations of the first test's uploads: ood_<key>.json.
        (cached,) = [p for p in (tmp / "eval_cache").glob("*.json") if not p.name.startswith("ood_")]
        evaluation = Evaluation.from_json(json.loads(cached.read_text()))
        matrix = evaluation.matrix()
        k = len(evaluation.classes)
        wrong = [(t, q) for t in range(k) for q in range(k) if t != q and matrix[t, q]]
        assert wrong, "the fixture model classifies every image right: nothing to click"
        true, predicted = wrong[-1]  # the last: the picker starts on the first cell, so the click must move it
        chart = page.locator("[data-testid='stPlotlyChart']").nth(1)
        click_cell(page, chart, k, true, predicted)
        names = evaluation.classes
        cell = selected(page.locator("[data-testid='stMain']"), "Images of the cell (true → predicted)")
        assert cell == f"{names[true]} → {names[predicted]} ({matrix[true, predicted]} images)"
        assert_no_traceback(page, "evaluation after the cell click")

        first_wrong = evaluation.indices[evaluation.misclassified()[0]]
        page.locator(f".st-key-wrong_open_{first_wrong} button").click()
        settle(page)
        assert page.get_by_text(f"Image #{first_wrong} is now the current image on every page.").count() == 1
        assert_no_traceback(page, "evaluation after opening an image")
        screenshot(page, shots / "evaluation.png")

        sidebar.locator("[data-testid='stSidebarNav'] a[href$='/rollout']").click()
        settle(page)
        assert selected(sidebar, "Sample").endswith(f" · #{first_wrong}")
        sidebar.get_by_text("Draw ground-truth parts", exact=True).click()
        settle(page)
        assert_no_traceback(page, "rollout with parts")
        main = page.locator("[data-testid='stMain']")
        said = main.get_by_text("peak hits a deciding part").count() + main.get_by_text("peak misses every").count()
        assert said >= 1, "no panel says whether its peak hits a part"
        screenshot(page, shots / "parts.png")
        browser.close()
