"""One checkpoint on one dataset split: every image's top-5, computed once and kept on disk as JSON.

The file is keyed by the checkpoint's SHA-256 (not its path: a retrained file at the same path is another model),
the loader, the resolved root and the split, so re-opening the evaluation page is instant and a changed checkpoint
is evaluated afresh. The summaries (top-1/top-5, per-class accuracy, confusion) are recomputed from the stored
predictions by :mod:`fgvc_core.explain.scoring.confusion`, so the cache holds raw results only.

Files live in ``FGVC_EVAL_CACHE_DIR`` (default: ``eval_cache`` beside the app's runs folder, i.e.
``runs/eval_cache``), a folder the operator chooses, never one a visitor types.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fgvc_core.app.datasets import DatasetChoice
from fgvc_core.app.settings import REPO_ROOT, AppPaths
from fgvc_core.engine.checkpoint import file_sha256
from fgvc_core.errors import FGVCError
from fgvc_core.explain.scoring import confusion

CACHE_VERSION = 1
TOP_K = 5
Progress = Callable[[int, int], None]


def cache_dir(paths: AppPaths) -> Path:
    value = os.environ.get("FGVC_EVAL_CACHE_DIR", "").strip()
    if value:
        path = Path(value).expanduser()
        return path if path.is_absolute() else REPO_ROOT / path
    return paths.runs.parent / "eval_cache"


def cache_key(checkpoint_sha256: str, choice: DatasetChoice) -> str:
    text = f"v{CACHE_VERSION}|{checkpoint_sha256}|{choice.name}|{choice.root}|{choice.split}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def label_map(dataset_classes: Sequence[str], model_classes: Sequence[str]) -> list[int]:
    """Each dataset label's index among the model's classes, by name, ``-1`` where the model lacks the class.

    When no name matches but the counts agree (a folder dataset named differently), labels map by index.
    """
    index = {name: k for k, name in enumerate(model_classes)}
    mapped = [index.get(name, -1) for name in dataset_classes]
    if all(m < 0 for m in mapped) and len(dataset_classes) == len(model_classes):
        return list(range(len(dataset_classes)))
    return mapped


@dataclass(frozen=True)
class Evaluation:
    """The stored predictions of one checkpoint on one split, and the summaries computed from them.

    Attributes:
        classes: the checkpoint's class names (the confusion matrix's axes).
        indices: dataset index of each evaluated image.
        labels: the true class of each image in the checkpoint's indices (``-1``: a class it does not have).
        topk: the checkpoint's top-5 class indices per image, best first.
        topk_probs: their probabilities.
        skipped: ``(dataset index, reason)`` of images that could not be read.
        from_cache: whether this came from the file on disk.
    """

    classes: list[str]
    indices: list[int]
    labels: list[int]
    topk: list[list[int]]
    topk_probs: list[list[float]]
    skipped: list[tuple[int, str]]
    from_cache: bool = False

    @property
    def predictions(self) -> list[int]:
        return [row[0] for row in self.topk]

    @property
    def max_softmax(self) -> np.ndarray:
        return np.asarray([row[0] for row in self.topk_probs], dtype=np.float64)

    @property
    def unknown(self) -> int:
        """Images whose true class the checkpoint does not have (left out of every accuracy)."""
        return sum(1 for label in self.labels if label < 0)

    def top(self, k: int) -> float:
        return confusion.topk_accuracy(self.labels, self.topk, k)

    def matrix(self) -> np.ndarray:
        return confusion.confusion_matrix(self.labels, self.predictions, len(self.classes))

    def misclassified(self) -> list[int]:
        """Positions (into ``indices``) of the images with a known label predicted wrong."""
        return [i for i, (y, p) in enumerate(zip(self.labels, self.predictions)) if y >= 0 and y != p]

    def as_json(self) -> dict[str, Any]:
        return {
            "version": CACHE_VERSION,
            "classes": self.classes,
            "indices": self.indices,
            "labels": self.labels,
            "topk": self.topk,
            "topk_probs": self.topk_probs,
            "skipped": [list(s) for s in self.skipped],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        skipped = [(int(i), str(why)) for i, why in data["skipped"]]
        return cls(data["classes"], data["indices"], data["labels"], data["topk"], data["topk_probs"], skipped, True)


@torch.no_grad()
def evaluate(
    model: Any,
    transform: Callable[[Any], torch.Tensor],
    dataset: Any,
    classes: Sequence[str],
    progress: Progress | None = None,
    batch_size: int = 16,
) -> Evaluation:
    """Run ``model.predict`` over every image of ``dataset`` (untransformed items), in batches.

    An image that cannot be read (an ``FGVCError`` from the loader) is skipped and listed, not fatal.
    """
    mapping = label_map(dataset.classes, classes)
    k = min(TOP_K, len(classes))
    indices: list[int] = []
    labels: list[int] = []
    topk: list[list[int]] = []
    probs_out: list[list[float]] = []
    skipped: list[tuple[int, str]] = []
    n = len(dataset)
    for start in range(0, n, batch_size):
        batch, batch_ids = [], []
        for i in range(start, min(n, start + batch_size)):
            try:
                batch.append(transform(dataset.load(i)))
                batch_ids.append(i)
            except FGVCError as exc:
                skipped.append((i, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        if batch:
            probs = model.predict(torch.stack(batch))
            values, order = probs.topk(k, dim=1)
            indices += batch_ids
            labels += [mapping[int(dataset.samples[i][1])] for i in batch_ids]
            topk += order.tolist()
            probs_out += [[float(v) for v in row] for row in values]
        if progress is not None:
            progress(min(n, start + batch_size), n)
    return Evaluation(list(classes), indices, labels, topk, probs_out, skipped)


def checkpoint_sha256(path: Path) -> str:
    return file_sha256(Path(path))


def cache_file(paths: AppPaths, checkpoint: Path, choice: DatasetChoice) -> Path:
    return cache_dir(paths) / f"{cache_key(checkpoint_sha256(checkpoint), choice)}.json"


def load_cached(path: Path) -> Evaluation | None:
    """The evaluation stored at ``path``; None when there is none or it is unreadable or of another version."""
    try:
        data = json.loads(path.read_text())
        if data.get("version") != CACHE_VERSION:
            return None
        return Evaluation.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(path: Path, evaluation: Evaluation, describe: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a file); ``describe`` says what was evaluated, for humans."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**evaluation.as_json(), "evaluated": describe}
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(data, handle)
    os.replace(handle.name, path)
