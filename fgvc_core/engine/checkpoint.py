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
from fgvc_core.errors import CheckpointError, FGVCError

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
    """Read and validate a checkpoint's sidecar (``.safetensors`` or ``.json`` path accepted).

    The sidecar is untrusted: every field a caller reads is type-checked here, so that a hand-edited file ends in
    one ``CheckpointError`` line rather than a ``TypeError`` somewhere downstream.
    """
    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(f"checkpoint sidecar not found: {side.name} (expected beside {path.name})")
    try:
        meta = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{side.name} is not valid JSON: {exc}".splitlines()[0]) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{side.name} is not an FGVC Explorer checkpoint sidecar")
    version = meta.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{side.name}: format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{side.name} was written by a newer FGVC Explorer (format {version})")
    model = meta.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("config"), dict) or "name" not in model:
        raise CheckpointError(f"{side.name} has no valid 'model' entry (name and config)")
    if not isinstance(model["name"], str):
        raise CheckpointError(f"{side.name}: model name must be a string, got {model['name']!r}")
    _check_fields(meta, side.name)
    return meta


def _check_fields(meta: dict[str, Any], source: str) -> None:
    """Types of the optional sidecar fields that callers read; ``preprocess`` is validated in full."""
    from fgvc_core.data.transforms import resolve_preprocess
    from fgvc_core.models.limits import MAX_IMG_SIZE

    classes = meta.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise CheckpointError(f"{source}: classes must be a list of class names (strings)")
    for key in ("metrics", "dataset", "weights", "training_state", "explain_metrics"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise CheckpointError(f"{source}: {key} must be a JSON object, got {type(meta[key]).__name__}")
    for key in ("weights", "training_state"):
        sha = (meta.get(key) or {}).get("sha256")
        if sha is not None and not isinstance(sha, str):
            raise CheckpointError(f"{source}: {key}.sha256 must be a string")
    if "preprocess" in meta:
        try:
            pp = resolve_preprocess(meta)
        except FGVCError as exc:
            raise CheckpointError(f"{source}: invalid preprocessing: {exc}") from None
        if pp["img_size"] > MAX_IMG_SIZE or pp["resize"] > 2 * MAX_IMG_SIZE:
            raise CheckpointError(f"{source}: preprocessing sizes above the limit of {MAX_IMG_SIZE} px")


def _verified(path: Path, expected_sha: str | None) -> Path:
    """``path`` if it is a regular file whose SHA-256 is the one its sidecar recorded."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path.name}")
    if expected_sha and file_sha256(path) != expected_sha:
        raise CheckpointError(f"{path.name} does not match its sidecar (changed or partly written)")
    return path


def _read_tensors(path: Path, expected_sha: str | None) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    _verified(path, expected_sha)
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt files
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({type(exc).__name__})") from None


def read_header_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header, reading no tensor data.

    The safetensors library refuses a header above 100 MB and one whose offsets do not cover the file exactly, so
    these shapes are ones the file really holds: a sidecar's sizes can be checked against them before allocating.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ...
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({type(exc).__name__})") from None


def _describe(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _fit_problems(own: dict[str, tuple[int, ...]], given: dict[str, tuple[int, ...]], source: str) -> None:
    """Raise unless ``given`` has exactly the keys and shapes of ``own``; the message names the keys."""
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    reshaped = [f"{k} {given[k]}≠{own[k]}" for k in own if k in given and given[k] != own[k]]
    problems = []
    if missing:
        problems.append(f"missing {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected {_describe(unexpected)}")
    if reshaped:
        problems.append(f"different shapes {_describe(reshaped)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the architecture: " + "; ".join(problems))


def _shapes(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(tensor.shape) for key, tensor in tensors.items()}


def load_weights_into(model: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Load a full state dict; any missing, unexpected or reshaped key is an error that names the keys."""
    own = model.state_dict()
    _fit_problems(_shapes(own), _shapes(weights), source)
    with torch.no_grad():
        for key, tensor in own.items():
            tensor.copy_(weights[key].to(tensor.dtype))


def check_finite(tensors: dict[str, torch.Tensor], source: str, what: str = "weights") -> None:
    """Raise CheckpointError if any floating-point tensor holds NaN or inf (predictions would print ``nan%``)."""
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"{source} holds non-finite {what} (NaN or inf) in {_describe(bad)}; it cannot be used")
    # finite, yet NaN at the first BatchNorm: sqrt of a negative variance
    negative = [k for k, t in tensors.items() if k.endswith("running_var") and bool((t < 0).any())]
    if negative:
        raise CheckpointError(f"{source} holds negative BatchNorm variances in {_describe(negative)}; it is broken")


def check_finite_outputs(probs: torch.Tensor) -> torch.Tensor:
    """``probs`` unchanged, or CheckpointError if any is NaN or inf: finite weights can still overflow."""
    if not bool(torch.isfinite(probs).all()):
        raise CheckpointError("the model gave non-finite outputs (NaN or inf): its weights overflow; it cannot be used")
    return probs


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, checked against the SHA-256 its sidecar recorded."""
    path = Path(path)
    return _read_tensors(path, (read_meta(path).get("weights") or {}).get("sha256"))


def _build(name: str, num_classes: int, options: dict[str, Any], source: str) -> nn.Module:
    from fgvc_core.models.registry import build_model

    try:
        return build_model(name, num_classes, **options)
    except CheckpointError:
        raise
    except (ValueError, TypeError, RuntimeError, AssertionError) as exc:  # a hostile config can upset timm/torch
        raise CheckpointError(f"cannot rebuild the model of {source}: {exc}".splitlines()[0]) from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from the sidecar and load its weights; returns ``(model in eval mode, meta)``.

    The sidecar is untrusted, so nothing is allocated on its word: its options pass a whitelist with size caps
    (``fgvc_core.models.limits``), the model is first built on the ``meta`` device (no memory) and its state-dict
    shapes compared with the weights file's header; only then is it built for real and loaded, and weights that
    hold NaN or inf are refused.
    """
    from fgvc_core.models.limits import check_checkpoint_config

    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    meta = read_meta(path)
    side = sidecar_path(path).name
    name, config = meta["model"]["name"], meta["model"]["config"]
    try:
        options = check_checkpoint_config(name, config)
    except FGVCError as exc:
        raise CheckpointError(f"{side}: {exc}") from None
    num_classes = config["num_classes"]
    classes = meta.get("classes")
    if classes is None:
        raise CheckpointError(f"{side} has no class names ('classes'); predictions could not be labelled")
    if len(classes) != num_classes:
        raise CheckpointError(f"{side} names {len(classes)} classes for a model with {num_classes} outputs")
    weights_file = _verified(path, (meta.get("weights") or {}).get("sha256"))
    header = read_header_shapes(weights_file)
    with torch.device("meta"):  # shapes only: a size the file does not back is refused before any allocation
        skeleton = _build(name, num_classes, options, path.name)
    _fit_problems(_shapes(skeleton.state_dict()), header, path.name)
    del skeleton
    model = _build(name, num_classes, options, path.name)
    weights = _read_tensors(weights_file, None)  # hashed above
    load_weights_into(model, weights, path.name)
    check_finite(weights, path.name)
    return model.to(device).eval(), meta


def load_training_state(path: str | Path) -> dict[str, Any] | None:
    """The nested training state saved with ``save_checkpoint(..., training_state=...)``, or None."""
    path = Path(path)
    meta = read_meta(path)
    info = meta.get("training_state")
    if not info:
        return None
    # the name beside the weights, not info["file"]: a renamed trio (last.prev.*) keeps working; the hash decides
    if "structure" not in info:
        raise CheckpointError(f"{sidecar_path(path).name}: training_state has no structure")
    tensors = _read_tensors(_train_state_path(path), info.get("sha256"))
    return unflatten_state(info["structure"], tensors, source=_train_state_path(path).name)
