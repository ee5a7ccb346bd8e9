"""Learning-rate schedule of both papers' recipes: linear warm-up, then cosine decay, stepped per iteration."""

from __future__ import annotations

import math

import torch


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> float:
    """Multiplier of each group's base lr at optimiser step ``step`` (0-based).

    Warm-up rises linearly from ``1/(warmup_steps+1)`` to 1; then the cosine goes from 1 to ``min_ratio`` at
    ``total_steps``. RAMS-Trans: 500 warm-up steps, cosine to 10,000. CRA-SMRA: cosine over all steps.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over :func:`warmup_cosine_factor`; its state dict is plain data, so resume is exact."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, total_steps, warmup_steps, min_ratio)
    )
