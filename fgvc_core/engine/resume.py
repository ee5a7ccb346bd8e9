"""``--resume`` means the same run: the saved config must match, and a killed run's leftovers are cleared first.

A resume used to accept a changed ``batch_size``, ``lr`` or ``img_size`` silently (and record the new values as if
the run had used them throughout), and a switched optimizer failed with ``KeyError: 'step'``. Only keys that change
how long or how fast a run goes, or what it logs, may differ (``RESUMABLE_CHANGES``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from fgvc_core.errors import ConfigError

RESUMABLE_CHANGES = frozenset(
    {
        "train.epochs",  # continue a finished run for longer
        "train.max_steps",
        "train.workers",
        "train.log_every",
        "train.device",
        "train.eval_every",
        "train.checkpoint_every_steps",
        "train.compile",
        "train.output",  # the same folder, spelled another way (relative vs absolute)
        "data.on_bad_image",
    }
)

# Names of files that only exist while a save or status write is in flight (engine/checkpoint.py's _Staged and
# _replace_with_link, engine/logging.py's status file): any that remain when the run folder's lock is ours are
# orphans of a killed run.
STAGING_PATTERNS = (".ckpt.*.tmp", ".*.link", ".status.json.tmp", ".metrics.csv.tmp")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}`` (mappings nested inside values are flattened too)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key (saved -> now)`` for every value that differs, except those a resume may change."""
    old, new = flatten(saved), flatten(current)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(k, "<unset>"))
    return [f"{k} ({old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r})" for k in keys if k not in RESUMABLE_CHANGES]


def prepare_run_folder(folder: Path, config: Mapping[str, Any], resume: bool) -> None:
    """Checks and cleaning before a run writes into ``folder`` (call while holding its run lock).

    A resume of a folder that has a checkpoint must use the config the run started with; files left by a killed
    save are removed (they are orphans: the lock says no one else is writing).
    """
    if resume and (folder / "last.safetensors").exists():
        check_resume_config(folder, config)
    removed = remove_orphaned_staging(folder)
    if removed:
        size = sum(removed.values()) / 2**20
        print(f"removed {len(removed)} temporary file(s) ({size:.1f} MiB) a killed run left in {folder}", flush=True)


def check_resume_config(folder: Path, config: Mapping[str, Any]) -> None:
    """Refuse to resume ``folder`` with a config that differs from the one its checkpoint was trained with.

    The reference is the config recorded in the sidecar of ``last`` (or of ``last.prev``, which a torn ``last``
    falls back to): that is what the weights were trained with, even when a later run that never saved rewrote
    ``config.yaml``. Without a readable sidecar, ``config.yaml``; with neither there is nothing to compare.
    """
    saved, source = _sidecar_config(folder / "last.json"), "last.json"
    if saved is None:
        saved, source = _sidecar_config(folder / "last.prev.json"), "last.prev.json"
    if saved is None and (folder / "config.yaml").is_file():
        source = "config.yaml"
        try:
            saved = yaml.safe_load((folder / source).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            raise ConfigError(f"cannot resume {folder}: its config.yaml is unreadable") from None
    if not isinstance(saved, Mapping):
        return
    differences = config_differences(saved, config)
    if differences:
        allowed = ", ".join(sorted(RESUMABLE_CHANGES - {"train.output"}))
        raise ConfigError(
            f"cannot resume {folder}: the config differs from the one in {source} in {'; '.join(differences)}; "
            f"only {allowed} may change on --resume (start a new run in another train.output instead)"
        )


def _sidecar_config(path: Path) -> Any:
    try:
        saved = json.loads(path.read_text()).get("train_config")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None  # the trainer's resume names what is wrong with the checkpoint itself
    return saved if isinstance(saved, Mapping) else None


def remove_orphaned_staging(folder: Path) -> dict[Path, int]:
    """Delete temporary files a killed save left behind; returns each removed file's size in bytes."""
    removed = {}
    for pattern in STAGING_PATTERNS:
        for path in folder.glob(pattern):
            if path.is_file() and not path.is_symlink():
                removed[path] = path.stat().st_size
                path.unlink()
    return removed
