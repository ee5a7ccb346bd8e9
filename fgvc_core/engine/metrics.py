"""Classification metrics over collected probabilities: top-k, per-class accuracy, confusion matrix."""

from __future__ import annotations

import torch


def topk_accuracy(probs: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Fraction of samples whose target is among the ``k`` highest probabilities."""
    k = min(k, probs.shape[1])
    hits = (probs.topk(k, dim=1).indices == targets[:, None]).any(dim=1)
    return hits.double().mean().item() if len(targets) else float("nan")


def confusion_matrix(probs: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(K, K)`` counts; row = true class, column = predicted class."""
    pred = probs.argmax(1)
    flat = targets.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Recall of each class (NaN for classes with no sample)."""
    totals = confusion.sum(1).double()
    return torch.where(totals > 0, confusion.diag().double() / totals.clamp(min=1), torch.nan)


def classification_report(
    head_probs: dict[str, torch.Tensor], combined: torch.Tensor, targets: torch.Tensor
) -> dict[str, object]:
    """Top-1/top-5 for every head and the combined prediction, plus per-class accuracy and confusion (combined)."""
    num_classes = combined.shape[1]
    report: dict[str, object] = {}
    for name, probs in {**head_probs, "combined": combined}.items():
        report[name] = {"top1": topk_accuracy(probs, targets, 1), "top5": topk_accuracy(probs, targets, 5)}
    confusion = confusion_matrix(combined, targets, num_classes)
    report["per_class_accuracy"] = per_class_accuracy(confusion).tolist()
    report["confusion"] = confusion.tolist()
    report["num_samples"] = int(len(targets))
    return report
