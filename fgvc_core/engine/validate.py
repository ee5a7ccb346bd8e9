"""One table of rules for every ``data``/``train`` value, checked before any work starts.

A typo'd or hostile value must end in one line that names the key, says what it must be and shows what it got,
not in a traceback an epoch later (``eval_every=0``), a silent wrong run (``lr=true`` is 1.0 to Python) or a
checkpoint that fails to save (``lr=.inf``). ``bool`` is never a number here, although Python says it is an int.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fgvc_core.errors import ConfigError

SEED_LIMIT = 2**63  # _mix and torch.manual_seed take non-negative seeds below this
MAX_IMG_SIZE = 4096  # a 100000-pixel input would try a many-GB allocation before anything useful
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class Rule:
    """``check(value)`` is True for an allowed value; ``expected`` completes "must be ..." in the message."""

    check: Callable[[Any], bool]
    expected: str


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int = 0, high: int | None = None, expected: str | None = None) -> Rule:
    """An int (not a bool) in ``[low, high)``."""
    if expected is None:
        expected = {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer >= {low}")
        if high is not None:
            expected += f" below {high}"
    return Rule(lambda v: _is_int(v) and v >= low and (high is None or v < high), expected)


def number(low: float = 0.0, high: float | None = None, *, low_open: bool = False, expected: str = "") -> Rule:
    """A finite int or float (not a bool) in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    return Rule(
        lambda v: _is_number(v) and (v > low if low_open else v >= low) and (high is None or v <= high),
        expected
        or ("a positive number" if low_open else f"a finite number >= {low:g}")
        + (f" and <= {high:g}" if high is not None else ""),
    )


def one_of(*choices: Any) -> Rule:
    return Rule(lambda v: isinstance(v, str) and v in choices, " or ".join(map(str, choices)))


def optional(rule: Rule) -> Rule:
    return Rule(lambda v: v is None or rule.check(v), f"null or {rule.expected}")


def _positive_lr(value: Any) -> bool:
    values = value.values() if isinstance(value, Mapping) else [value]
    return bool(values) and all(_is_number(v) and v > 0 for v in values)


BOOLEAN = Rule(lambda v: isinstance(v, bool), "true or false")
TEXT = Rule(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
MAPPING = Rule(lambda v: isinstance(v, Mapping), "a mapping")
SEED = integer(0, SEED_LIMIT, expected="an integer in [0, 2**63)")

RULES: dict[str, dict[str, Rule]] = {
    "data": {
        "name": TEXT,
        "root": TEXT,
        "train_split": TEXT,
        "test_split": TEXT,
        "preset": TEXT,  # which presets exist is the transforms' business (preprocess_config names them)
        "img_size": optional(integer(16, MAX_IMG_SIZE + 1, expected=f"an integer from 16 to {MAX_IMG_SIZE}")),
        "resize": optional(integer(16, MAX_IMG_SIZE + 1, expected=f"an integer from 16 to {MAX_IMG_SIZE}")),
        "num_classes": optional(integer(2, expected="an integer >= 2")),
        "train_samples": integer(1),
        "seed": SEED,
        "options": MAPPING,
        "curriculum": optional(MAPPING),
        "on_bad_image": one_of("stop", "skip"),
        "resize_mode": optional(one_of("square", "short_side")),
        "train_crop": optional(one_of("random", "center")),
        "val_split": optional(TEXT),
        "val_fraction": Rule(lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1) (0: no validation)"),
        "val_seed": SEED,
        "val_samples": integer(0, expected="a non-negative integer (0: no validation stream)"),
        "val_stream_seed": SEED,
    },
    "train": {
        "epochs": integer(1),
        "batch_size": integer(1),
        "optimizer": one_of("sgd", "adamw"),
        "lr": Rule(_positive_lr, "a positive number or a mapping of them"),
        "momentum": number(0.0, 1.0),
        "weight_decay": number(0.0),
        "nesterov": BOOLEAN,
        "warmup_steps": integer(0),
        "min_lr_ratio": number(0.0, 1.0),
        "grad_clip": number(0.0, expected="a finite number >= 0 (0 disables clipping)"),
        "amp": one_of("auto", "bf16", "fp16", "none"),
        "device": Rule(
            lambda v: isinstance(v, str) and DEVICE_PATTERN.fullmatch(v) is not None, "auto, cpu, cuda or cuda:N"
        ),  # fmt: skip
        "workers": integer(0),
        "seed": SEED,
        "deterministic": BOOLEAN,
        "channels_last": BOOLEAN,
        "compile": BOOLEAN,
        "fused": Rule(lambda v: v == "auto" or isinstance(v, bool), "auto, true or false"),
        "eval_every": integer(1, expected="a positive integer (epochs)"),
        "checkpoint_every_steps": integer(0, expected="a non-negative integer (0: only at epoch ends)"),
        "output": TEXT,
        "save_dtype": one_of("float32", "float16", "bfloat16"),
        "max_steps": integer(0, expected="a non-negative integer (0: no limit)"),
        "log_every": integer(1),
        "select_on": one_of("val", "test", "last"),
    },
}


def validate_sections(config: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` naming the first ``data``/``train`` value that breaks its rule (in key order)."""
    for section, rules in RULES.items():
        values = config.get(section) or {}
        for key, value in values.items():
            rule = rules.get(key)
            if rule is not None and not rule.check(value):
                raise ConfigError(f"{section}.{key} must be {rule.expected}, got {value!r}")
