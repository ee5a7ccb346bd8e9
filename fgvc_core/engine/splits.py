"""The validation split that picks ``best.safetensors``: held out of the training data, never the test split.

Neither paper says how its reported checkpoint was chosen; the official RAMS-Trans code keeps the best *test*
accuracy, which biases the reported number upwards. Here the best epoch is chosen on data that neither the
optimiser nor the reported test number uses:
- a named split of the dataset when it has one (FGVC-Aircraft's official ``val``), set by ``data.val_split``;
- else a deterministic per-class fraction (``data.val_fraction``) of the training split, drawn with
  ``data.val_seed``: every class keeps at least one training image, and a class with two or more gives at least
  one to validation, so a small class is never left out of either side;
- for the on-the-fly benchmark, a separate stream with its own rendering seed (``data.val_stream_seed``), which
  no training window or test folder shares.
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from fgvc_core.errors import ConfigError

SELECT_ON = ("val", "test", "last")


def check_split_options(data_cfg: dict[str, Any], select_on: Any) -> None:
    """Refuse inconsistent validation options before any data is read."""
    if select_on not in SELECT_ON:
        raise ConfigError(f"train.select_on must be one of {', '.join(SELECT_ON)}, got {select_on!r}")
    fraction = data_cfg.get("val_fraction", 0.0)
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0.0 <= fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be a number in [0, 1), got {fraction!r}")
    for key in ("val_seed", "val_stream_seed"):
        value = data_cfg.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ConfigError(f"data.{key} must be an integer >= 0, got {value!r}")
    samples = data_cfg.get("val_samples", 1)
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 0:
        raise ConfigError(f"data.val_samples must be an integer >= 0, got {samples!r}")
    val_split = data_cfg.get("val_split")
    if val_split is not None and (not isinstance(val_split, str) or not val_split):
        raise ConfigError(f"data.val_split must be a split name or null, got {val_split!r}")
    if val_split is not None and val_split in (data_cfg.get("test_split"), data_cfg.get("train_split")):
        raise ConfigError(f"data.val_split {val_split!r} must differ from the train and test splits")
    if select_on == "val" and not has_validation(data_cfg):
        raise ConfigError(
            "train.select_on=val needs a validation split: set data.val_fraction > 0 (or data.val_samples > 0 "
            "for synth_stream, or data.val_split), or choose train.select_on=last"
        )


def has_validation(data_cfg: dict[str, Any]) -> bool:
    if data_cfg.get("name") == "synth_stream":
        return data_cfg.get("val_samples", 0) > 0
    return data_cfg.get("val_split") is not None or data_cfg.get("val_fraction", 0.0) > 0


def per_class_holdout(targets: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(train indices, validation indices)``: ``round(fraction · n_c)`` images of each class held out.

    Each class's indices are shuffled by a generator seeded with ``(seed, class)``, so adding a class or an
    image to another class does not change which images of this class are held out.
    """
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(targets):
        by_class[int(label)].append(index)
    train, val = [], []
    for label, indices in sorted(by_class.items()):
        n = len(indices)
        take = min(n - 1, max(1 if n >= 2 else 0, math.floor(fraction * n + 0.5))) if fraction > 0 else 0
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + label)).tolist()
        val += [indices[i] for i in order[:take]]
        train += [indices[i] for i in order[take:]]
    return sorted(train), sorted(val)


class SubsetView(Dataset):
    """Items ``indices`` of ``base`` (no transform of its own) with an optional ``transform`` on the image.

    It keeps what the trainer and the app read from a dataset: ``classes``, ``samples`` and ``targets``.
    """

    def __init__(self, base: Dataset, indices: Sequence[int], transform: Callable | None = None) -> None:
        self.base, self.indices, self.transform = base, list(indices), transform
        self.classes = list(base.classes)

    @property
    def samples(self) -> list[tuple[str, int]]:
        return [self.base.samples[i] for i in self.indices]

    @property
    def targets(self) -> list[int]:
        return [y for _, y in self.samples]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.base[self.indices[index]]
        return (image if self.transform is None else self.transform(image)), label
