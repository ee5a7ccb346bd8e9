"""Where the app looks for checkpoints, data, recipes and background runs.

Every location can be redirected by an environment variable, read on each call (not at import), so the tests
point the app at tiny checkpoints in a temporary folder and a deployment can keep its models elsewhere:

- ``FGVC_CHECKPOINT_DIR``: checkpoints (default ``<repo>/checkpoints``; the γ sweep lives in its ``sweep/``);
- ``FGVC_DATA_ROOT``: the benchmark the gallery and the δ sweep read (default ``<repo>/data/synth``);
- ``FGVC_RUNS_DIR``: where training runs started from the app write (default ``<repo>/runs/app``);
- ``FGVC_RECIPES_DIR``: the YAML recipes the training form offers (default ``<repo>/train/configs``).

``FGVC_TORCH_THREADS`` sets the app's intra-op threads (default: half the cores, at least 1); see
:func:`configure_torch`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

MODEL_KINDS: tuple[str, ...] = ("rams_trans", "cra_smra")
MODEL_TITLES: dict[str, str] = {"rams_trans": "RAMS-Trans", "cra_smra": "CRA-SMRA"}
DEMO_FILES: dict[str, str] = {"rams_trans": "rams_trans_demo.safetensors", "cra_smra": "cra_smra_demo.safetensors"}
SWEEP_FOLDER = "sweep"
IMAGE_TYPES: tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff")
UPLOAD_KINDS = "PNG, JPEG, WebP, BMP, GIF or TIFF"


@dataclass(frozen=True)
class AppPaths:
    """The folders the app reads and writes (see the module docstring)."""

    root: Path
    checkpoints: Path
    data: Path
    runs: Path
    recipes: Path

    @property
    def sweep(self) -> Path:
        return self.checkpoints / SWEEP_FOLDER

    def demo(self, kind: str) -> Path:
        """The demo checkpoint of ``kind`` (it may not exist yet)."""
        return self.checkpoints / DEMO_FILES[kind]


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    path = Path(value).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def app_paths() -> AppPaths:
    """The current folders, with the environment overrides applied."""
    return AppPaths(
        root=REPO_ROOT,
        checkpoints=_env_path("FGVC_CHECKPOINT_DIR", REPO_ROOT / "checkpoints"),
        data=_env_path("FGVC_DATA_ROOT", REPO_ROOT / "data" / "synth"),
        runs=_env_path("FGVC_RUNS_DIR", REPO_ROOT / "runs" / "app"),
        recipes=_env_path("FGVC_RECIPES_DIR", REPO_ROOT / "train" / "configs"),
    )


def configure_torch() -> int:
    """Set torch's intra-op threads for the app process once; returns the number used.

    The app traces one image at a time, where extra threads gain little, and it shares the CPU with the training
    runs it starts: measured on a 2-core machine with two trainings running, a CRA-SMRA trace took ~30 ms with one
    thread and ~960 ms with two (threads spinning against each other). So the default is half the cores.
    """
    import torch

    value = os.environ.get("FGVC_TORCH_THREADS", "").strip()
    threads = int(value) if value.isdigit() and int(value) > 0 else max(1, (os.cpu_count() or 2) // 2)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def display_path(path: Path) -> str:
    """A path relative to the repository when it lies inside it (shorter labels), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
