"""Datasets and loaders for training, built so that a resumed run sees exactly the batches it would have seen.

Two things make resume exact, independent of the number of DataLoader workers:
- the order: epoch ``e`` uses a permutation drawn from ``(seed, e)``, and a resumed epoch skips the batches it
  already consumed (no iteration over them);
- the augmentation: each sample's random transform runs under its own RNG seed derived from
  ``(seed, epoch, index)``, so it does not depend on which worker draws it or on what ran before.
With DDP, each rank takes a strided share of the same permutation (``DistributedSampler``'s rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fgvc_core.data.registry import build_dataset
from fgvc_core.data.transforms import build_transform, preprocess_config
from fgvc_core.engine.bad_images import GuardedLoader
from fgvc_core.engine.splits import SubsetView, per_class_holdout
from fgvc_core.errors import ConfigError


def _mix(*values: int) -> int:
    """A 63-bit seed from several non-negative integers (NumPy's SeedSequence: stable across processes)."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, np.uint64)[0] >> 1)


class EpochSampler(Sampler):
    """Yields ``(index, sample_seed)`` for one epoch: a seeded permutation, sharded by rank, resumable by batch."""

    def __init__(
        self,
        length: int,
        batch_size: int,
        seed: int,
        epoch: int,
        skip_batches: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        self.length, self.batch_size, self.seed, self.epoch = length, batch_size, seed, epoch
        self.skip_batches, self.rank, self.world_size, self.shuffle = skip_batches, rank, world_size, shuffle

    def _indices(self) -> list[int]:
        if self.shuffle:
            order = torch.randperm(self.length, generator=torch.Generator().manual_seed(_mix(self.seed, self.epoch)))
        else:
            order = torch.arange(self.length)
        per_rank = -(-self.length // self.world_size)
        padded = order.tolist() + order.tolist()[: per_rank * self.world_size - self.length]  # as DistributedSampler
        mine = padded[self.rank :: self.world_size]
        return mine[self.skip_batches * self.batch_size :]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self._indices():
            yield index, _mix(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return len(self._indices())


class SeededTransform(Dataset):
    """Applies ``transform`` to ``base[index]`` under the RNG seed the sampler gave for that sample."""

    def __init__(self, base: Dataset, transform: Callable | None) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        index, seed = key if isinstance(key, tuple) else (key, index_seed(key))
        image, label = self.base[index]
        if self.transform is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                image = self.transform(image)
        return image, label


def index_seed(index: int) -> int:
    return _mix(0, index)


class RunData(NamedTuple):
    """The data of one run: training set (untransformed), validation and test sets (eval transform), classes.

    ``val`` is None when the run selects on the test split or on the last epoch without a validation split.
    """

    train: Dataset
    val: Dataset | None
    test: Dataset
    classes: list[str]


def build_data(data_cfg: dict[str, Any], preprocess: dict[str, Any]) -> RunData:
    """The training, validation and test sets of a config's data section (see `fgvc_core.engine.splits`)."""
    name = data_cfg["name"]
    options = dict(data_cfg.get("options") or {})
    eval_transform = build_transform(preprocess)
    if name == "synth_stream":
        from fgvc_core.data.synth import SynthStream

        num_classes = data_cfg.get("num_classes")
        if not num_classes:
            raise ConfigError("data.num_classes is required for synth_stream")
        if isinstance(options.get("options"), dict):  # generator options from YAML, e.g. an easier curriculum
            options["options"] = synth_options(options["options"])
        options.setdefault("size", preprocess["img_size"])
        train = SynthStream(
            num_samples=data_cfg["train_samples"], num_classes=num_classes, seed=data_cfg["seed"], **options
        )
        test = build_dataset("synth", data_cfg["root"], data_cfg["test_split"], eval_transform)
        classes = list(test.classes)
        if classes != list(train.classes):
            raise ConfigError(
                f"the training stream's {num_classes} classes differ from the test benchmark's in {data_cfg['root']} "
                f"({len(classes)} classes); set data.num_classes to match it"
            )
        val = None
        if data_cfg.get("val_samples", 0) > 0:
            if data_cfg["val_stream_seed"] == data_cfg["seed"]:
                raise ConfigError("data.val_stream_seed must differ from data.seed (the training stream's)")
            val = SynthStream(
                num_samples=data_cfg["val_samples"],
                num_classes=num_classes,
                seed=data_cfg["val_stream_seed"],
                transform=eval_transform,
                **{k: v for k, v in options.items() if k != "transform"},
            )
        return RunData(train, val, test, classes)
    train = build_dataset(name, data_cfg["root"], data_cfg["train_split"], None, **options)
    test = build_dataset(name, data_cfg["root"], data_cfg["test_split"], eval_transform, **options)
    val = None
    if data_cfg.get("val_split") is not None:
        val = build_dataset(name, data_cfg["root"], data_cfg["val_split"], eval_transform, **options)
        if list(val.classes) != list(train.classes):
            raise ConfigError(f"data.val_split {data_cfg['val_split']!r} has other classes than the training split")
    elif data_cfg.get("val_fraction", 0.0) > 0:
        kept, held_out = per_class_holdout(train.targets, data_cfg["val_fraction"], data_cfg["val_seed"])
        val = SubsetView(train, held_out, eval_transform)
        train = SubsetView(train, kept)
    return RunData(train, val, test, list(train.classes))


def synth_options(values: dict[str, Any]) -> Any:
    """``SynthOptions`` from a plain dict (YAML lists become the tuples the generator expects)."""
    from dataclasses import fields

    from fgvc_core.data.synth import SynthOptions

    known = {f.name for f in fields(SynthOptions)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown synth generator option(s) {sorted(unknown)}; known: {sorted(known)}")
    return SynthOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def data_preprocess(data_cfg: dict[str, Any]) -> dict[str, Any]:
    return preprocess_config(
        data_cfg["preset"],
        data_cfg.get("img_size"),
        data_cfg.get("resize_mode"),
        data_cfg.get("train_crop"),
        data_cfg.get("resize"),
    )


def train_loader(
    dataset: Dataset,
    preprocess: dict[str, Any],
    batch_size: int,
    seed: int,
    epoch: int,
    skip_batches: int,
    workers: int,
    rank: int = 0,
    world_size: int = 1,
    curriculum: dict[str, Any] | None = None,
    on_bad_image: str = "stop",
) -> DataLoader:
    """Loader for one epoch of training (a new one per epoch: the sampler carries the epoch and the skip).

    A dataset with a ``window(epoch)`` method (the on-the-fly benchmark) shows fresh images every epoch, drawn
    with the ``curriculum``'s easier generator options during its first ``curriculum["epochs"]`` epochs.
    """
    if hasattr(dataset, "window"):
        easy = curriculum is not None and epoch < int(curriculum.get("epochs", 0))
        dataset = dataset.window(epoch, synth_options(curriculum.get("options", {})) if easy else None)
    sampler = EpochSampler(len(dataset), batch_size, seed, epoch, skip_batches, rank, world_size)
    return GuardedLoader(  # an image that fails to decode: one clear line, or skipped (engine/bad_images.py)
        SeededTransform(dataset, build_transform(preprocess, train=True)),
        on_bad_image=on_bad_image,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,  # equal batches on every rank and a stable step count
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        # Its own generator: creating the iterator must not draw from the global RNG, whose state a resumed
        # run restores mid-epoch (dropout randomness would shift by one draw otherwise).
        generator=torch.Generator().manual_seed(_mix(seed, epoch, 1)),
    )


def eval_loader(dataset: Dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
