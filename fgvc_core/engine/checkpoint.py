"""Checkpoints: safetensors weights + a JSON sidecar, written atomically, read without unpickling.

Layout for ``run/best.safetensors``:
- ``run/best.safetensors``: the model's state dict (optionally fp16 to keep demo checkpoints small);
- ``run/best.json``: the sidecar: format version, code version, model name and build config, class names,
  preprocessing, dataset, metrics, and anything else the caller passes in ``meta``;
- ``run/best.train.safetensors`` (only when ``training_state`` is given): optimizer/scheduler/RNG tensors, with
  their structure in the sidecar, so that ``--resume`` can continue a killed run exactly.

Every file goes to a temporary name in the same folder first and is renamed into place (atomic on POSIX), and the
sidecar is written last and records the weights' SHA-256: a crash never leaves a sidecar that points to a
half-written weights file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from fgvc_core.engine.state_io import flatten_state, unflatten_state
from fgvc_core.errors import CheckpointError

FORMAT = "fgvc-explorer-checkpoint"
FORMAT_VERSION = 1
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def sidecar_path(path: str | Path) -> Path:
    """``x.safetensors`` -> ``x.json``."""
    return Path(path).with_suffix(".json")


def _train_state_path(path: Path) -> Path:
    return path.with_name(path.stem + ".train.safetensors")


def code_version() -> str:
    """Package version plus the git commit when the code runs from a checkout."""
    from fgvc_core import __version__

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}" if sha else __version__


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    meta: dict[str, Any] | None = None,
    *,
    dtype: str = "float32",
    training_state: dict[str, Any] | None = None,
    keep_previous: bool = False,
) -> Path:
    """Write ``model`` and ``meta`` atomically; return the weights path.

    Each file is replaced atomically, but a checkpoint is two or three files, so a crash between their renames
    leaves a torn set (new weights, old sidecar), which the sidecar's hashes reveal. ``keep_previous=True`` (the
    trainer's ``last``) first hard-links the current set to ``<stem>.prev.*`` and only then renames the new files
    in: at every instant one of the two sets is whole, and :func:`previous_path` names the fallback.

    Args:
        model: an ``FGVCModel`` (its ``model_name`` and ``config`` go to the sidecar so it can be rebuilt); a DDP or
            ``torch.compile`` wrapper is unwrapped.
        path: target ``.safetensors`` file.
        meta: JSON-able extras: ``classes``, ``preprocess``, ``dataset``, ``metrics``, ``train_config``, ...
        dtype: storage dtype of floating-point weights (``"float16"`` halves demo checkpoints).
        training_state: optional nested dict (optimizer/scheduler/RNG/epoch...) for exact resume.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint path must end in .safetensors, got {path.name}")
    if dtype not in _DTYPES:
        raise CheckpointError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    model = getattr(model, "module", model)  # DDP
    model = getattr(model, "_orig_mod", model)  # torch.compile
    if not getattr(model, "model_name", ""):
        raise CheckpointError("only FGVC models (built with fgvc_core.build_model) can be saved as checkpoints")

    try:  # refuse non-JSON metadata before anything is written
        json.dumps(meta or {}, allow_nan=False)
        json.dumps(model.config, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint metadata must be plain JSON data: {exc}") from None

    weights = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.to(_DTYPES[dtype])
        weights[key] = tensor.contiguous()
    train_path = _train_state_path(path)
    staged = _Staged(path.parent)
    try:
        renames = {path: staged.write(lambda tmp: save_file(weights, str(tmp)))}
        train_info = None
        if training_state is not None:
            skeleton, tensors = flatten_state(training_state)
            renames[train_path] = staged.write(lambda tmp: save_file(tensors, str(tmp)))
            train_info = {"file": train_path.name, "structure": skeleton, "sha256": file_sha256(renames[train_path])}
        text = _sidecar_text(model, path, meta, dtype, file_sha256(renames[path]), train_info)
        renames[sidecar_path(path)] = staged.write(lambda tmp: tmp.write_text(text))  # dicts keep order: it goes last
        if keep_previous and path.exists() and sidecar_path(path).exists():
            prev = previous_path(path)
            kept = {path: prev, train_path: _train_state_path(prev), sidecar_path(path): sidecar_path(prev)}
            for final in renames:
                if final.exists():
                    _replace_with_link(final, kept[final])
        for final, tmp in renames.items():
            os.replace(tmp, final)
    finally:
        staged.cleanup()
    return path


def previous_path(path: str | Path) -> Path:
    """``last.safetensors`` -> ``last.prev.safetensors``: the set ``keep_previous`` kept before the latest write."""
    path = Path(path)
    return path.with_name(path.stem + ".prev.safetensors")


def _replace_with_link(source: Path, target: Path) -> None:
    """Atomically make ``target`` the same file as ``source`` (a hard link; a copy where links are refused)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


class _Staged:
    """Temporary files written (and fsynced) beside their targets, renamed in later, removed on failure."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.paths = folder, []

    def write(self, write: Any) -> Path:
        fd, tmp = tempfile.mkstemp(prefix=".ckpt.", suffix=".tmp", dir=self.folder)
        os.close(fd)
        self.paths.append(Path(tmp))
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide checkpoints from the rest of a lab group
        return Path(tmp)

    def cleanup(self) -> None:
        for tmp in self.paths:
            if tmp.exists():
                tmp.unlink()


def _sidecar_text(model, path: Path, meta, dtype: str, weights_sha: str, train_info: dict | None) -> str:
    """The JSON sidecar: the caller's meta plus format, code version, model config and the files' hashes."""
    sidecar = dict(meta or {})
    sidecar.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        code_version=code_version(),
        model={"name": model.model_name, "config": model.config},
        weights={"file": path.name, "dtype": dtype, "sha256": weights_sha},
    )
    sidecar.pop("training_state", None)
    if train_info is not None:
        sidecar["training_state"] = train_info
    return json.dumps(sidecar, indent=2, sort_keys=True, allow_nan=False)


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint's sidecar (``.safetensors`` or ``.json`` path accepted)."""
    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(f"checkpoint sidecar not found: {side.name} (expected beside {path.name})")
    try:
        meta = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{side.name} is not valid JSON: {exc}".splitlines()[0]) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{side.name} is not an FGVC Explorer checkpoint sidecar")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{side.name} was written by a newer FGVC Explorer (format {meta['format_version']})")
    model = meta.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("config"), dict) or "name" not in model:
        raise CheckpointError(f"{side.name} has no valid 'model' entry (name and config)")
    return meta


def _read_tensors(path: Path, expected_sha: str | None) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path.name}")
    if expected_sha and file_sha256(path) != expected_sha:
        raise CheckpointError(f"{path.name} does not match its sidecar (changed or partly written)")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt files
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({type(exc).__name__})") from None


def _describe(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_weights_into(model: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Load a full state dict; any missing, unexpected or reshaped key is an error that names the keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    reshaped = [
        f"{k} {tuple(weights[k].shape)}≠{tuple(own[k].shape)}"
        for k in own
        if k in weights and weights[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected {_describe(unexpected)}")
    if reshaped:
        problems.append(f"different shapes {_describe(reshaped)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the architecture: " + "; ".join(problems))
    with torch.no_grad():
        for key, tensor in own.items():
            tensor.copy_(weights[key].to(tensor.dtype))


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, checked against the SHA-256 its sidecar recorded."""
    path = Path(path)
    return _read_tensors(path, read_meta(path).get("weights", {}).get("sha256"))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from the sidecar and load its weights; returns ``(model in eval mode, meta)``."""
    from fgvc_core.models.registry import build_model

    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    meta = read_meta(path)
    config = dict(meta["model"]["config"])
    num_classes = config.pop("num_classes", None)
    if num_classes is None:
        raise CheckpointError(f"{sidecar_path(path).name}: model config has no num_classes")
    try:
        model = build_model(meta["model"]["name"], num_classes, **config)
    except CheckpointError:
        raise
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot rebuild the model of {path.name}: {exc}") from None
    load_weights_into(model, read_weights(path), path.name)
    return model.to(device).eval(), meta


def load_training_state(path: str | Path) -> dict[str, Any] | None:
    """The nested training state saved with ``save_checkpoint(..., training_state=...)``, or None."""
    path = Path(path)
    meta = read_meta(path)
    info = meta.get("training_state")
    if not info:
        return None
    # the name beside the weights, not info["file"]: a renamed trio (last.prev.*) keeps working; the hash decides
    tensors = _read_tensors(_train_state_path(path), info.get("sha256"))
    return unflatten_state(info["structure"], tensors)
