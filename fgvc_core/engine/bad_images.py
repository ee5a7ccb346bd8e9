"""What a training epoch does with an image that fails to decode: ``data.on_bad_image: stop | skip``.

An exception raised inside a DataLoader worker reaches the main process re-raised with the worker's whole
traceback in its message (24 lines in the error line and in ``status.json``). Here the worker catches the
user-facing error (``FGVCError``: ``load_image`` raises ``ImageError`` with one line naming the file) and hands it
over as data, so the main process either stops with that one line (``stop``) or logs the file, counts it and
trains on the rest of the batch (``skip``). Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader, Dataset, default_collate

from fgvc_core.errors import FGVCError, ImageError

ON_BAD_IMAGE = ("stop", "skip")
_WORKER_PREFIX = "Caught "  # torch's ExceptionWrapper: "Caught ImageError in DataLoader worker process 0.\n..."


@dataclass(frozen=True)
class BadSample:
    """Stands in for a sample whose image could not be used (picklable: it crosses from a worker)."""

    index: int
    message: str


class GuardedSamples(Dataset):
    """``inner[key]``, or a :class:`BadSample` when it raises a user-facing error; other attributes are the inner
    dataset's (``loader.dataset.base`` still reaches the wrapped set)."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (unpickling in a worker): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.inner[key]
        except FGVCError as exc:
            return BadSample(key[0] if isinstance(key, tuple) else key, one_line(str(exc)))


def collate_guarded(items: list[Any]) -> tuple[Any, list[BadSample]]:
    """(the usual batch of the good samples or None when none is good, the bad ones)."""
    good = [item for item in items if not isinstance(item, BadSample)]
    bad = [item for item in items if isinstance(item, BadSample)]
    return (default_collate(good) if good else None), bad


class GuardedLoader(DataLoader):
    """A DataLoader that yields the usual batches and applies ``on_bad_image`` to samples that failed.

    With ``skip`` a batch holds only the good samples, and is None when none was good (``train_one_epoch``
    counts it as consumed, so that ``--resume``'s batch skip stays aligned with the sampler).

    ``skipped`` counts the samples skipped so far (the epoch summary reports it).
    """

    def __init__(self, dataset: Dataset, *, on_bad_image: str = "stop", **kwargs: Any) -> None:
        if on_bad_image not in ON_BAD_IMAGE:
            raise ValueError(f"on_bad_image must be stop or skip, got {on_bad_image!r}")
        super().__init__(GuardedSamples(dataset), collate_fn=collate_guarded, **kwargs)
        self.on_bad_image = on_bad_image
        self.skipped = 0

    def __iter__(self) -> Iterator[Any]:
        for batch, bad in super().__iter__():
            if bad and self.on_bad_image == "stop":
                raise ImageError(f"{bad[0].message} (set data.on_bad_image=skip to train without it)")
            for sample in bad:
                self.skipped += 1
                print(f"warning: skipped a training image: {sample.message}", file=sys.stderr, flush=True)
            yield batch  # None when every sample failed: the loop still counts the batch, so a resume skips it


def one_line(message: str) -> str:
    """The cause of an error re-raised from a DataLoader worker (its last line, without the exception's name)."""
    if not message.startswith(_WORKER_PREFIX) or "\n" not in message:
        return message
    last = next(line for line in reversed(message.strip().splitlines()) if line.strip()).strip()
    name, sep, rest = last.partition(": ")
    return rest if sep and " " not in name else last
