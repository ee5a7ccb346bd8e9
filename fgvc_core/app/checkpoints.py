"""Find, describe and validate the checkpoints the app offers, without loading any weights.

A checkpoint is a ``.safetensors`` file with its JSON sidecar (``fgvc_core.save_checkpoint``). Listing reads only
sidecars, so the sidebar stays fast however many runs there are; a file whose sidecar is missing or broken is
left out of the lists (and reported with its reason when a user types its path).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fgvc_core.app.allowed import NOT_AVAILABLE, PathNotAvailable, allowed_roots, confine, is_inside
from fgvc_core.app.settings import MODEL_KINDS, MODEL_TITLES, SWEEP_MODEL, AppPaths, display_path
from fgvc_core.engine.checkpoint import read_meta, sidecar_path
from fgvc_core.errors import CheckpointError


@dataclass(frozen=True)
class CheckpointInfo:
    """What the sidecar says about one checkpoint.

    Attributes:
        path: the ``.safetensors`` file (absolute).
        kind: the model name in the sidecar (a registered model: ``fgvc_core.models.registry.get_spec(kind)``).
        source: ``demo``, ``checkpoints``, ``sweep``, ``run`` (trained from the app) or ``typed``.
        meta: the whole sidecar.
    """

    path: Path
    kind: str
    source: str
    meta: dict[str, Any] = field(repr=False, compare=False)

    @property
    def label(self) -> str:
        """How the sidebar names it: the path relative to the repository, plus where it comes from."""
        tag = {"demo": " (demo)", "sweep": " (γ sweep)", "run": " (trained in the app)"}.get(self.source, "")
        return display_path(self.path) + tag

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes") or [])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.meta["model"]["config"])


def validate_checkpoint_path(
    text: str | Path, root: Path, kind: str | None = None, allowed: Sequence[Path] | None = None
) -> CheckpointInfo:
    """Check a path a user typed and describe the checkpoint it names.

    Args:
        text: the typed path; relative paths are taken from the repository root.
        root: the repository root.
        kind: when given, the model the checkpoint must hold.
        allowed: the resolved folders checkpoints may be opened from (default: the checkpoint and runs roots of
            :func:`fgvc_core.app.allowed.allowed_roots`).

    Raises:
        PathNotAvailable: the path, or its sidecar, resolves outside ``allowed``: one message whatever it is.
        CheckpointError: inside ``allowed`` but empty, missing, a folder, not ``.safetensors``, no or invalid
            sidecar, or another model; the message says which, in one line.
    """
    raw = str(text).strip().strip("'\"")
    if not raw:
        raise CheckpointError("type the path of a .safetensors checkpoint")
    roots = allowed_roots().readable_checkpoints if allowed is None else tuple(allowed)
    path = confine(raw, roots, root)  # before any check that would tell what exists
    if not path.exists():
        raise CheckpointError(f"no such file: {raw}")
    if path.is_dir():
        raise CheckpointError(f"{raw} is a folder; give the .safetensors file inside it")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path.name} is not a .safetensors checkpoint")
    if path.name.endswith(".train.safetensors"):
        raise CheckpointError(f"{path.name} holds optimizer state, not a model; pick the file beside it")
    sidecar = sidecar_path(path)
    if not is_inside(sidecar, roots):  # a sidecar symlinked out of the roots would be read from anywhere
        raise PathNotAvailable(f"{raw}: {NOT_AVAILABLE}")
    if not sidecar.is_file():
        raise CheckpointError(f"{path.name} has no sidecar {sidecar.name} beside it")
    info = describe(path, "typed")
    if kind is not None and info.kind != kind:
        other = MODEL_TITLES.get(info.kind, info.kind)
        raise CheckpointError(f"{path.name} holds a {other} model, not {MODEL_TITLES.get(kind, kind)}")
    return info


def describe(path: Path, source: str) -> CheckpointInfo:
    """Read and check the sidecar of ``path``.

    Raises:
        CheckpointError: no sidecar, not ours, or a model name the app does not know.
    """
    meta = read_meta(path)
    kind = meta["model"]["name"]
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"{Path(path).name} holds an unknown model {kind!r}")
    return CheckpointInfo(Path(path).resolve(), kind, source, meta)


def _candidates(paths: AppPaths) -> Iterable[tuple[Path, str]]:
    for kind in MODEL_KINDS:
        demo = paths.demo(kind)
        if demo is not None:
            yield demo, "demo"
    if paths.checkpoints.is_dir():
        for path in sorted(paths.checkpoints.rglob("*.safetensors")):
            yield path, "sweep" if path.parent == paths.sweep else "checkpoints"
    if paths.runs.is_dir():
        for run in sorted(paths.runs.iterdir(), reverse=True):  # newest run first (names start with a timestamp)
            for name in ("best.safetensors", "last.safetensors"):
                if (run / name).is_file():
                    yield run / name, "run"
                    break


def list_checkpoints(paths: AppPaths, kind: str | None = None) -> list[CheckpointInfo]:
    """Every usable checkpoint: the demos first, then the rest of ``checkpoints/``, then runs started in the app.

    Files whose sidecar is missing or invalid, training-state files, and files symlinked out of the allowed roots
    are left out.
    """
    roots = allowed_roots(paths).readable_checkpoints
    seen: set[Path] = set()
    found = []
    for path, source in _candidates(paths):
        if path.name.endswith(".train.safetensors") or not path.is_file() or path.resolve() in seen:
            continue
        if not (is_inside(path, roots) and is_inside(sidecar_path(path), roots)):
            continue
        seen.add(path.resolve())
        try:
            info = describe(path, source)
        except CheckpointError:
            continue
        if kind is None or info.kind == kind:
            found.append(info)
    return found


def numeric_metrics(meta: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a sidecar's ``metrics`` (nested dicts flattened as ``a/b``); lists are left out."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, sub in value.items():
                walk(f"{prefix}/{key}" if prefix else str(key), sub)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[prefix] = float(value)

    walk("", meta.get("metrics") or {})
    return out


@dataclass(frozen=True)
class SweepPoint:
    """One checkpoint of the γ sweep: its γ, its metrics and where it is."""

    gamma: float
    info: CheckpointInfo
    metrics: dict[str, float]


def gamma_sweep(paths: AppPaths) -> list[SweepPoint]:
    """The ``SWEEP_MODEL`` (CRA-SMRA) checkpoints in ``checkpoints/sweep/`` by γ (one per γ: the first file wins)."""
    points: dict[float, SweepPoint] = {}
    if not paths.sweep.is_dir():
        return []
    roots = allowed_roots(paths).readable_checkpoints
    for path in sorted(paths.sweep.glob("*.safetensors")):
        if path.name.endswith(".train.safetensors") or not is_inside(path, roots):
            continue
        if not is_inside(sidecar_path(path), roots):
            continue
        try:
            info = describe(path, "sweep")
        except CheckpointError:
            continue
        gamma = info.config.get("gamma")
        if info.kind != SWEEP_MODEL or not isinstance(gamma, (int, float)):
            continue
        points.setdefault(float(gamma), SweepPoint(float(gamma), info, numeric_metrics(info.meta)))
    return [points[g] for g in sorted(points)]
