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

from fgvc_core.models.registry import get_spec, list_specs

REPO_ROOT = Path(__file__).resolve().parents[2]

# From the model specs (fgvc_core.models.registry), in their registration order: the order the app shows models in.
MODEL_KINDS: tuple[str, ...] = tuple(spec.name for spec in list_specs())
MODEL_TITLES: dict[str, str] = {spec.name: spec.title for spec in list_specs()}
DEMO_FILES: dict[str, str] = {spec.name: spec.demo_file for spec in list_specs() if spec.demo_file}
SWEEP_FOLDER = "sweep"
SWEEP_MODEL = "cra_smra"  # the γ sweep in SWEEP_FOLDER varies CRA-SMRA's SMRAM weight γ (the Tune page)
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

    def demo(self, kind: str) -> Path | None:
        """The demo checkpoint of ``kind`` (it may not exist yet); None for a model without a demo."""
        name = DEMO_FILES.get(kind)
        return None if name is None else self.checkpoints / name


def model_kinds(page: str | None = None) -> tuple[str, ...]:
    """The registered models in app order; with ``page``, only those whose spec lists that page."""
    return tuple(kind for kind in MODEL_KINDS if page is None or get_spec(kind).supports(page))


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
