"""Training configs: one YAML format for both models, with ``section.key=value`` overrides from the CLI.

A config has three sections: ``model`` (``name`` plus build options for ``build_model``), ``data`` (which dataset,
preprocessing preset, sizes) and ``train`` (optimisation, logging, output). Defaults live in ``DEFAULTS`` so a
recipe file only says what differs; unknown keys in ``data``/``train`` are errors (a typo must not silently fall
back to a default), while ``model`` options are validated by the model builder itself.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from fgvc_core.engine.validate import validate_sections
from fgvc_core.errors import ConfigError

DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {},
    "data": {
        "name": "synth",  # any build_dataset name, or "synth_stream" (rendered on the fly, never repeats)
        "root": "data/synth",
        "train_split": "train",
        "test_split": "test",
        "preset": "demo",  # preprocessing preset (fgvc_core.data.transforms.PRESETS)
        "img_size": None,  # None: the preset's size
        "resize": None,  # the resized side before the crop; None: the preset's, scaled with img_size
        "resize_mode": None,  # square | short_side; None: the preset's (square in every preset, as the papers)
        "train_crop": None,  # random | center; None: the preset's (center for cra_smra, as its paper)
        # Model selection: "best" is chosen on a validation split, never on the test split (train.select_on).
        "val_split": None,  # a named split of the dataset to validate on (e.g. aircraft's "val"); None: see below
        "val_fraction": 0.1,  # else this per-class fraction of the training split is held out (0: no validation)
        "val_seed": 0,  # seed of that per-class draw (the same seed holds out the same images)
        "val_samples": 600,  # synth_stream only: images of the validation stream
        "val_stream_seed": 2,  # synth_stream only: its rendering seed (train stream: data.seed; test folder: 1)
        "num_classes": None,  # synth_stream only
        "train_samples": 20000,  # synth_stream only: samples per epoch
        "seed": 0,  # synth_stream only: rendering seed of the training stream
        "options": {},  # extra build_dataset keyword options (e.g. annotation_level for aircraft)
        # synth_stream only: easier generator options for the first epochs, e.g.
        # {epochs: 2, options: {scale_range: [0.6, 0.9], clutter_shapes: [0, 3]}}; then the benchmark's own.
        "curriculum": None,
        "on_bad_image": "stop",  # an image that fails to decode in training: stop the run | skip it (logged, counted)
    },
    "train": {
        "epochs": 10,
        "batch_size": 32,
        "optimizer": "sgd",  # sgd (both papers) | adamw (for ViTs trained from scratch, e.g. the demo)
        "lr": 0.01,  # a float, or {group name: lr} for the model's parameter groups
        "momentum": 0.9,
        "weight_decay": 0.0,
        "nesterov": False,
        "warmup_steps": 0,
        "min_lr_ratio": 0.0,  # cosine floor as a fraction of each group's lr
        "grad_clip": 0.0,  # max global grad norm; 0 disables
        "amp": "auto",  # auto (bf16 on CUDA, off on CPU) | bf16 | fp16 | none
        "device": "auto",  # auto (CUDA when present) | cpu | cuda | cuda:N
        "workers": 2,
        "seed": 0,
        "deterministic": False,
        "channels_last": False,
        "compile": False,
        "fused": "auto",  # fused optimizer kernel: auto (on CUDA) | true (any device that has it) | false
        "eval_every": 1,  # epochs
        # which split picks best.safetensors: val (default) | test (the official code's practice: biased, warns) |
        # last (no selection: best is the last evaluated epoch)
        "select_on": "val",
        "checkpoint_every_steps": 0,  # 0: only at epoch ends
        "output": "runs/default",
        "save_dtype": "float32",
        "max_steps": 0,  # 0: no limit (used by tests and quick runs)
        "log_every": 10,
    },
}


_SCIENTIFIC = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")


def _parse_value(text: str) -> Any:
    """YAML scalars: ``0.7`` -> float, ``true`` -> bool, ``[1, 0]`` -> list, ``abc`` -> str."""
    if _SCIENTIFIC.fullmatch(text.strip()):
        return float(text)  # YAML 1.1 reads 1e-3 (no dot) as a string; a learning rate must not become one
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse override value {text!r}: {exc}".splitlines()[0]) from None


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``config`` with ``a.b.c=value`` overrides applied."""
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        parts = key.split(".")
        node = config
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(value)
    return config


def merge_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and refuse unknown sections or keys in ``data``/``train``."""
    unknown_sections = set(config) - set(DEFAULTS)
    if unknown_sections:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown_sections))}")
    merged = copy.deepcopy(DEFAULTS)
    for section, values in config.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"config section {section!r} must be a mapping")
        if section != "model":
            unknown = set(values) - set(DEFAULTS[section])
            if unknown:
                raise ConfigError(f"unknown key(s) in {section}: {', '.join(sorted(unknown))}")
        merged[section].update(values)
    if "name" not in merged["model"]:
        raise ConfigError("model.name is required (rams_trans or cra_smra)")
    validate_sections(merged)  # every data/train value against one table of rules, before any work
    return merged


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a YAML recipe (or start from nothing), apply overrides, fill defaults and validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path.name} is not valid YAML: {exc}".splitlines()[0]) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path.name} must hold a mapping with model/data/train sections")
    return merge_defaults(apply_overrides(raw, overrides or []))
