"""`build_dataset`: one name -> one loader, imported on use (so a missing optional part never breaks the rest)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fgvc_core.errors import ConfigError, DatasetError

DATASETS: dict[str, str] = {
    "cub": "fgvc_core.data.cub:CUBDataset",
    "cars": "fgvc_core.data.cars:StanfordCarsDataset",
    "aircraft": "fgvc_core.data.aircraft:AircraftDataset",
    "dogs": "fgvc_core.data.dogs:StanfordDogsDataset",
    "folder": "fgvc_core.data.folder:FolderDataset",
    "synth": "fgvc_core.data.synth.dataset:build_synth_dataset",
}
"""Dataset name -> ``"module:factory"``; every factory takes ``(root, split, transform=None, **options)``."""


def dataset_factory(name: str) -> Callable[..., Any]:
    """The class or function that builds dataset ``name``."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(map(repr, DATASETS))}")
    module_name, attr = DATASETS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):  # our own module is missing, not a dependency
            raise ConfigError(f"dataset {name!r} is not available in this installation ({module_name})") from None
        raise
    return getattr(module, attr)


def build_dataset(
    name: str, root: str | Path, split: str, transform: Callable[[Any], Any] | None = None, **options: Any
) -> Any:
    """Build a dataset from its official on-disk layout; items are ``(image, label)``.

    Args:
        name: ``"cub"``, ``"cars"``, ``"aircraft"``, ``"dogs"``, ``"folder"`` or ``"synth"``.
        root: The dataset folder (see each loader's module docstring for the layout it expects).
        split: ``"train"`` or ``"test"`` (aircraft also ``"val"``, ``"trainval"``; folder also ``"val"``).
        transform: Applied to each PIL image, e.g. ``build_transform(meta, train=True)``.
        **options: Loader options, e.g. ``annotation_level="family"`` for aircraft.

    Returns:
        A torch Dataset with ``.classes``, ``.samples`` (path, label), ``len()``, and boxes/parts where the set
        has them.

    Raises:
        ConfigError: Unknown name, split or option.
        DatasetError: The folder does not match the layout; the message names the file at fault.
    """
    factory = dataset_factory(name)
    try:
        inspect.signature(factory).bind(root, split, transform=transform, **options)
    except TypeError:
        allowed = _option_names(factory)
        bad = sorted(set(options) - set(allowed))
        hint = f"; options: {', '.join(allowed)}" if allowed else "; it takes no options"
        raise ConfigError(f"dataset {name!r} has no option {', '.join(map(repr, bad)) or '?'}{hint}") from None
    if root is None or str(root) == "":
        raise DatasetError(f"dataset {name!r}: no root folder given")
    return factory(root, split, transform=transform, **options)


def _option_names(factory: Callable[..., Any]) -> list[str]:
    params = list(inspect.signature(factory).parameters.values())
    fixed = {"self", "root", "split", "transform"}
    return [p.name for p in params if p.name not in fixed and p.kind is not inspect.Parameter.VAR_KEYWORD]
