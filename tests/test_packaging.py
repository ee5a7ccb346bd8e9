"""The project installs like any other library: a wheel with the recipes, the app files and five console scripts,
whose requirements are requirements.txt, installed (offline, without dependencies) into a fresh venv where
``fgvc-predict`` runs from outside the checkout."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SOURCES = ["pyproject.toml", "requirements.txt", "README.md", "LICENSE", "app.py", "pages", "fgvc_core", "train"]
SCRIPTS = {
    "fgvc-train": "train.train:cli",
    "fgvc-evaluate": "train.evaluate:cli",
    "fgvc-predict": "train.predict:cli",
    "fgvc-explain": "train.explain:cli",
    "fgvc-app": "fgvc_core.launch_app:cli",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (setuptools writes build/ and *.egg-info into the tree it builds)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, src / name)
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
           "-w", str(out), str(src)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (built,) = out.glob("fgvc_explorer-*.whl")
    return built


def _dist_info(zf: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in zf.namelist() if n.endswith(f".dist-info/{name}")]
    return zf.read(path).decode("utf-8")


def test_wheel_holds_recipes_app_licence_and_console_scripts(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = configparser.ConfigParser()
        entry_points.read_string(_dist_info(zf, "entry_points.txt"))
        metadata = _dist_info(zf, "METADATA")
    recipes = {p.relative_to(REPO).as_posix() for p in (REPO / "train" / "configs").rglob("*.yaml")}
    assert recipes and recipes <= names
    data = next(n.split("/data/")[0] for n in names if ".data/data/" in n) + "/data/share/fgvc-explorer/"
    pages = {f"{data}pages/{p.name}" for p in (REPO / "pages").glob("*.py")}
    assert {f"{data}app.py", *pages} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "checkpoints/", "benchmarks/")) for n in names)
    assert dict(entry_points["console_scripts"]) == SCRIPTS
    requires = sorted(line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: "))
    pins = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert requires == sorted(_normalise(p) for p in pins if p)


def _normalise(requirement: str) -> str:
    from packaging.requirements import Requirement

    return str(Requirement(requirement))


@pytest.mark.slow
def test_installed_wheel_runs_its_console_scripts_outside_the_checkout(wheel, tiny_checkpoint, tmp_path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                           text=True).strip())  # fmt: skip
    # The dependencies come from this test's environment (offline): the same effect as --system-site-packages
    # from .venv's python, which would expose the base interpreter's packages instead of .venv's.
    (purelib / "_deps_from_test_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
               str(wheel)]  # fmt: skip
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    bin_dir, work = venv / "bin", tmp_path / "elsewhere"
    assert all((bin_dir / name).is_file() for name in SCRIPTS)
    work.mkdir()  # not the checkout: nothing may be imported from the repository
    checkpoint, _ = tiny_checkpoint
    Image.new("RGB", (40, 30), (200, 40, 40)).save(work / "bird.png")
    run = subprocess.run([bin_dir / "fgvc-predict", "bird.png", "--checkpoint", str(checkpoint), "--topk", "2",
                          "--device", "cpu"], cwd=work, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "bird.png" and len(lines) == 3 and lines[1].lstrip().startswith("1. ")
    where = subprocess.run([python, "-c", WHERE], cwd=work, capture_output=True, text=True, timeout=120)
    train_file, app, recipes = where.stdout.split()
    assert Path(train_file).is_relative_to(purelib)
    assert app == str(Path(sysconfig.get_path("data", vars={"base": str(venv)})) / "share/fgvc-explorer/app.py")
    assert int(recipes) == len(list((REPO / "train" / "configs").rglob("*.yaml")))
    for name in ("fgvc-train", "fgvc-evaluate", "fgvc-explain"):
        helped = subprocess.run([bin_dir / name, "--help"], cwd=work, capture_output=True, text=True, timeout=120)
        assert helped.returncode == 0 and "usage:" in helped.stdout


# Run by the installed python: where `train` comes from, which app.py fgvc-app runs, how many recipes it ships.
WHERE = """
import pathlib, train, fgvc_core.launch_app as launch
print(train.__file__, launch.find_app(), len(list((pathlib.Path(train.__file__).parent / "configs").rglob("*.yaml"))))
"""


def test_make_test_runs_the_lint_checks_and_lint_skips_markdown() -> None:
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    planned = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "ruff check ." in planned and "ruff format --check ." in planned
    # ruff also formats python blocks inside markdown; the docs' blocks are laid out for reading (pyproject.toml)
    checked = subprocess.run([sys.executable, "-m", "ruff", "format", "--check", "."], cwd=REPO, capture_output=True,
                             text=True)  # fmt: skip
    assert ".md" not in checked.stdout + checked.stderr
