"""What a checkpoint sidecar may ask the model builders for.

A sidecar is untrusted input (anyone can hand the app or the CLI a checkpoint), yet its ``model.config`` goes to
``build_model`` and, for RAMS-Trans, on to ``timm.create_model``, whose keywords include ``checkpoint_path`` and
``pretrained_cfg_overlay``. So a checkpoint rebuild accepts only the architecture options listed here (never
``pretrained``: the weights come from the ``.safetensors`` file), no value that looks like a path or a hub
location, and sizes below caps that no FGVC model of this project comes near, so that a crafted sidecar cannot ask
for a 500 GB tensor, or a million blocks, before its weights file has been looked at. The exact shapes are then
checked against the weights file's header (``fgvc_core.engine.checkpoint``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fgvc_core.errors import ConfigError

MAX_IMG_SIZE = 1024  # the paper's models run at 448
MAX_NUM_CLASSES = 100_000
MAX_WIDTH = 8192  # embed_dim, conv_channels, head_hidden...: ViT-22B has 6144
MAX_DEPTH = 64  # ViT blocks: ViT-g has 48
MAX_HEADS = 256
MAX_MLP_RATIO = 16.0
MAX_TEXT = 100  # a backbone or choice name

# The architecture options of each builder (its keyword arguments minus ``pretrained``), by model name. Each
# model's ``ModelSpec.checkpoint_options`` fills it when the registry registers the model; a test keeps each set in
# sync with its builder's signature.
CHECKPOINT_OPTIONS: dict[str, frozenset[str]] = {}

# timm VisionTransformer keywords a RAMS-Trans checkpoint may carry: numbers and switches only, so nothing in
# vit_kwargs can name a file, a layer class or a hub entry.
VIT_KWARGS = frozenset(
    {
        "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "qk_norm", "scale_attn_norm", "scale_mlp_norm",
        "proj_bias", "init_values", "no_embed_class", "pre_norm", "final_norm", "fc_norm", "drop_rate",
        "attn_drop_rate", "drop_path_rate", "fix_init",
    }
)  # fmt: skip

# (option path, lowest, highest) for every size a sidecar sets, by model name (from ``ModelSpec.size_caps``); each
# number in a list value is checked.
SIZE_CAPS: dict[str, tuple[tuple[str, float, float], ...]] = {}

_FILE_WORDS = ("path", "file", "pretrained", "checkpoint", "cfg", "url", "hub", "dir")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _looks_like_location(text: str) -> bool:
    """A path, URL or timm source prefix (``hf-hub:``, ``local-dir:``) rather than a plain name."""
    return any(sep in text for sep in ("/", "\\", ":", "..", "\0")) or text.startswith("~")


def _check_value(where: str, value: Any, depth: int = 0) -> None:
    """Plain numbers, switches, short names and flat lists of them; one level of dict (``vit_kwargs``)."""
    if value is None or isinstance(value, bool):
        return
    if _is_number(value):
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return
    if isinstance(value, str):
        if _looks_like_location(value) or len(value) > MAX_TEXT:
            raise ConfigError(f"{where} names a file or location ({value[:40]!r}); a checkpoint may not do that")
        return
    if isinstance(value, list) and depth == 0 and len(value) <= 16:
        for i, item in enumerate(value):
            if not (_is_number(item) and math.isfinite(item)):
                raise ConfigError(f"{where}[{i}] must be a finite number, got {item!r}")
        return
    if isinstance(value, Mapping) and depth == 0 and where.endswith("vit_kwargs"):
        for key, item in value.items():
            _check_key(f"{where}.{key}", key, VIT_KWARGS)
            if item is not None and not isinstance(item, bool) and not _is_number(item):
                raise ConfigError(f"{where}.{key} must be a number or true/false, got {item!r}")
            _check_value(f"{where}.{key}", item, depth + 1)
        return
    raise ConfigError(f"{where} has an unexpected value {str(value)[:60]}")


def _check_key(where: str, key: Any, allowed: frozenset[str]) -> None:
    if key in allowed:
        return
    if isinstance(key, str) and any(word in key.lower() for word in _FILE_WORDS):
        raise ConfigError(f"{where} is not allowed in a checkpoint: the weights come from its .safetensors file")
    raise ConfigError(f"{where} is not an option a checkpoint may set")


def _numbers_at(config: Mapping[str, Any], dotted: str) -> list[float]:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return []
        value = value[part]
    items = value if isinstance(value, list) else [value]
    return [v for v in items if _is_number(v)]


def check_checkpoint_config(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a sidecar's ``model.config`` for ``name``; return the options for ``build_model`` (no num_classes).

    Raises:
        ConfigError: an unknown or file-naming option, a value that is not plain data, or a size beyond the caps;
            the message names the option (``model.config.vit_kwargs.checkpoint_path``).
    """
    allowed = CHECKPOINT_OPTIONS.get(name)
    if allowed is None:
        raise ConfigError(f"model {name!r} cannot be rebuilt from a checkpoint")
    num_classes = config.get("num_classes")
    if not (isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes >= 2):
        raise ConfigError(f"model.config.num_classes must be an integer >= 2, got {num_classes!r}")
    if num_classes > MAX_NUM_CLASSES:
        raise ConfigError(f"model.config.num_classes {num_classes} is above the limit of {MAX_NUM_CLASSES}")
    options = {k: v for k, v in config.items() if k != "num_classes"}
    if options.get("pretrained", "absent") is None:
        options.pop("pretrained")  # an explicit "no pretrained weights" is harmless
    for key, value in options.items():
        _check_key(f"model.config.{key}", key, allowed)
        _check_value(f"model.config.{key}", value)
    for dotted, low, high in SIZE_CAPS.get(name, ()):
        for number in _numbers_at(options, dotted):
            if not low <= number <= high:
                raise ConfigError(f"model.config.{dotted} {number!r} is outside the limits [{low}, {high}]")
    return options
