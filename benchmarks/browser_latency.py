"""Slider latency in a real browser: time from an arrow-key press on the DPPM α / CRAM δ slider to the updated page.

Two servers run one after the other: ``before`` (a git revision, extracted with ``git archive`` into a temporary
folder) and ``after`` (this working tree), on the same demo checkpoints and a small 224 px synth benchmark. For each
page the slider is focused and pressed ``--presses`` times; one press is timed from just before
``keyboard.press`` until (a) the panel's timing caption shows a new value, (b) the script state is ``notRunning``
and (c) every image in the main area has loaded (``img.complete``), polled every animation frame.

    .venv/bin/python -m benchmarks.browser_latency --before 916c677 --presses 6
    .venv/bin/python -m benchmarks.browser_latency --before 916c677 --presses 6 --direct   # page URLs first

The app's entry page is opened first (as a visitor arrives), unless ``--direct``: then each page's URL is the first
thing the fresh server serves, as a bookmark or a shared link is.

Prints a markdown table (median and max per page and variant). Needs /usr/bin/chromium and playwright.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from fgvc_core.testing.app_server import streamlit_server

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
CASES = (  # page path, caption prefix that changes with the slider, key
    ("dppm", "α update", "ArrowRight"),
    ("cram", "δ/ω update", "ArrowLeft"),
)
UPDATED = """([prefix, old]) => {
  const app = document.querySelector("[data-testid='stApp']");
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const caption = [...document.querySelectorAll("[data-testid='stMain'] [data-testid='stCaptionContainer']")]
    .map(e => e.innerText).find(t => t.startsWith(prefix));
  if (!caption || caption === old) return false;
  return [...document.querySelectorAll("[data-testid='stMain'] img")].every(i => i.complete && i.naturalWidth > 0);
}"""
CAPTION = """(prefix) => ([...document.querySelectorAll("[data-testid='stMain'] [data-testid='stCaptionContainer']")]
  .map(e => e.innerText).find(t => t.startsWith(prefix)) || '')"""


@contextmanager
def server(tree: Path, env: dict[str, str]):
    with streamlit_server(tree, {**env, "PYTHONPATH": str(tree)}) as url:
        yield url


def settle(page) -> None:
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=180_000)
    page.wait_for_selector("[data-test-script-state='notRunning']", timeout=180_000)
    page.wait_for_timeout(800)


def time_presses(page, prefix: str, key: str, presses: int) -> list[float]:
    slider = page.locator("[data-testid='stMain'] [data-testid='stSlider'] input[type=range]").nth(0)
    times = []
    for _ in range(presses):
        old = page.evaluate(CAPTION, prefix)
        slider.focus()
        start = time.perf_counter()
        page.keyboard.press(key)
        page.wait_for_function(UPDATED, arg=[prefix, old], polling="raf", timeout=60_000)
        times.append((time.perf_counter() - start) * 1000.0)
        page.wait_for_timeout(300)
    return times


def measure(url: str, presses: int, direct: bool = False) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        if not direct:  # the app's entry first, as a visitor arrives: app.py (navigation, page config, threads)
            page.goto(url, timeout=180_000)
            settle(page)
        for path, prefix, key in CASES:
            page.goto(f"{url}/{path}", timeout=180_000)
            settle(page)
            time_presses(page, prefix, key, 1)  # warm-up: the first press also fills the session's caches
            out[path] = time_presses(page, prefix, key, presses)
        browser.close()
    return out


def extract(revision: str, into: Path) -> Path:
    archive = into / "tree.tar"
    subprocess.run(["git", "archive", "-o", str(archive), revision], cwd=REPO, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=None, help="git revision of the 'before' app (default: none)")
    parser.add_argument("--presses", type=int, default=6)
    parser.add_argument("--direct", action="store_true",
                        help="open each page URL first on the fresh server, as a bookmark does")  # fmt: skip
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from fgvc_core.data.synth import write_benchmark

        data = write_benchmark(tmp / "synth", per_class=2, size=224, seed=1, progress=False)
        env = dict(os.environ, FGVC_CHECKPOINT_DIR=str(REPO / "checkpoints"), FGVC_DATA_ROOT=str(data),
                   FGVC_RUNS_DIR=str(tmp / "runs"), FGVC_DATA_ROOTS=str(tmp))  # fmt: skip
        trees = {"after (this tree)": REPO}
        if args.before:
            trees = {f"before ({args.before})": extract(args.before, tmp), **trees}
        results = {}
        for name, tree in trees.items():
            with server(tree, env) as url:
                results[name] = measure(url, args.presses, args.direct)
    print("| variant | page | presses | median ms | max ms |")
    print("|---|---|---:|---:|---:|")
    for name, pages in results.items():
        for path, times in pages.items():
            print(f"| {name} | {path} | {len(times)} | {statistics.median(times):.0f} | {max(times):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
