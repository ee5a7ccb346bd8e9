"""Classification summaries of one checkpoint on one dataset split: top-k, per-class accuracy, confusion.

Inputs are plain arrays (the true label of each image in the model's class indices, ``-1`` for a class the model
does not have, and its top-k predictions best first), so the app's evaluation cache can store them as JSON and
recompute every summary without the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _known(labels: np.ndarray) -> np.ndarray:
    return labels >= 0


def topk_accuracy(labels: Sequence[int], topk: Sequence[Sequence[int]], k: int) -> float:
    """Fraction of images (with a known label) whose label is among the first ``k`` predictions; NaN when none."""
    labels = np.asarray(labels, dtype=np.int64)
    top = np.asarray(topk, dtype=np.int64).reshape(len(labels), -1)[:, :k]
    keep = _known(labels)
    if not keep.any():
        return float("nan")
    return float((top[keep] == labels[keep, None]).any(axis=1).mean())


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_classes: int) -> np.ndarray:
    """``(K, K)`` counts: row = true class, column = predicted class (images with label ``-1`` left out)."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    keep = _known(labels)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels[keep], predictions[keep]), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall of each true class (diagonal / row sum); NaN for a class without images."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.where(totals > 0, totals, 1), np.nan)


@dataclass(frozen=True)
class ConfusedPair:
    """Two classes the model mixes up: images of ``a`` predicted ``b`` and of ``b`` predicted ``a``."""

    a: int
    b: int
    a_as_b: int
    b_as_a: int

    @property
    def total(self) -> int:
        return self.a_as_b + self.b_as_a


def confused_pairs(matrix: np.ndarray, limit: int = 10) -> list[ConfusedPair]:
    """The unordered class pairs with the most confusions (both directions summed), most first; ties by index."""
    matrix = np.asarray(matrix, dtype=np.int64)
    pairs = [
        ConfusedPair(a, b, int(matrix[a, b]), int(matrix[b, a]))
        for a in range(len(matrix))
        for b in range(a + 1, len(matrix))
        if matrix[a, b] + matrix[b, a] > 0
    ]
    pairs.sort(key=lambda p: (-p.total, p.a, p.b))
    return pairs[:limit]


def cell_images(labels: Sequence[int], predictions: Sequence[int], true_class: int, predicted: int) -> list[int]:
    """Indices (into the evaluated images) of the images in one confusion-matrix cell, in order."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    return np.flatnonzero((labels == true_class) & (predictions == predicted)).tolist()
