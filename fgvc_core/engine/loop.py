"""One training epoch and the evaluation pass, shared by both models (torchvision references' shape)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn
from tqdm import tqdm

from fgvc_core.engine.distributed import all_reduce_sum
from fgvc_core.engine.logging import ProgressEvent, RunLogger
from fgvc_core.errors import TrainingError


@dataclass
class TrainState:
    """Where a run is; saved with every checkpoint so ``--resume`` continues mid-epoch."""

    epoch: int = 0  # current epoch (0-based)
    step: int = 0  # optimiser steps done in total
    batch_in_epoch: int = 0  # batches of ``epoch`` already consumed
    best_top1: float = -1.0


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """The mixed-precision context of ``train.amp`` on ``device``.

    ``auto`` is bf16 on CUDA and fp32 elsewhere (a CPU run stays exact by default); an explicit ``bf16``/``fp16`` is
    honoured on every device, so the CUDA code path (autocast, and the GradScaler for fp16) runs in CI on the CPU.
    """
    if amp == "none" or (amp == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
    *,
    device: torch.device,
    total_steps: int,
    amp: str = "auto",
    grad_clip: float = 0.0,
    scaler: torch.amp.GradScaler | None = None,
    logger: RunLogger | None = None,
    log_every: int = 10,
    max_steps: int = 0,
    on_step: Callable[[TrainState], None] | None = None,
    show_progress: bool = True,
    channels_last: bool = False,
    num_batches: int | None = None,
) -> dict[str, float]:
    """Train over ``batches`` (already positioned after ``state.batch_in_epoch``); returns epoch means.

    ``on_step`` runs after every optimiser step (the trainer uses it for step checkpoints).
    """
    model.train()
    core = _unwrap(model)
    sums = torch.zeros(3, dtype=torch.float64)  # loss*n, correct, n
    tick, seen_since = time.perf_counter(), 0
    bar = tqdm(batches, total=num_batches, desc=f"epoch {state.epoch + 1}", disable=not show_progress, leave=False)
    for batch in bar:
        if max_steps and state.step >= max_steps:
            break
        if batch is None:  # every sample of the batch was a skipped bad image (data.on_bad_image=skip)
            state.batch_in_epoch += 1
            continue
        images, targets = batch
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        with autocast(device, amp):
            output = model(images)
            loss, parts = core.loss(output, targets)
        check_finite_loss(loss, state)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        state.step += 1
        state.batch_in_epoch += 1

        batch = targets.numel()
        correct = (output.probs.argmax(1) == targets).sum().item()
        sums += torch.tensor([loss.item() * batch, correct, batch], dtype=torch.float64)
        seen_since += batch
        if state.step % log_every == 0 or state.step == total_steps:
            elapsed = time.perf_counter() - tick
            metrics = {
                "loss": loss.item(),
                "acc": correct / batch,
                "lr": optimizer.param_groups[0]["lr"],
                "img_per_s": seen_since / max(elapsed, 1e-9),
                **{k: float(v) for k, v in parts.items()},
            }
            bar.set_postfix(
                loss=f"{metrics['loss']:.3f}",
                acc=f"{metrics['acc']:.2f}",
                lr=f"{metrics['lr']:.2e}",
                img_s=f"{metrics['img_per_s']:.0f}",
            )
            if logger is not None:
                logger.log(ProgressEvent("step", state.epoch, state.step, total_steps, "train", metrics))
            tick, seen_since = time.perf_counter(), 0
        if on_step is not None:
            on_step(state)
    bar.close()
    sums = all_reduce_sum(sums)
    n = max(sums[2].item(), 1.0)
    return {"loss": sums[0].item() / n, "acc": sums[1].item() / n}


def check_finite_loss(loss: torch.Tensor, state: TrainState) -> None:
    """Stop before a NaN/inf loss reaches the weights, so the last checkpoint stays the last good one.

    Under DDP every rank sees the summed loss and stops together (one rank stopping alone would hang the others).
    """
    total = all_reduce_sum(loss.detach().float().reshape(1))
    if not torch.isfinite(total).all():
        raise TrainingError(
            f"the loss became {total.item()} at step {state.step + 1} (epoch {state.epoch + 1}); training stopped "
            "before updating the weights, the last checkpoint is the last good one (try a lower train.lr or "
            "set train.grad_clip)"
        )


@torch.no_grad()
def collect_predictions(
    model: nn.Module, batches: Iterable, device: torch.device, amp: str = "auto", show_progress: bool = False
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Run the model in eval mode; return (per-head probabilities, combined probabilities, targets) on CPU."""
    model.eval()
    heads: dict[str, list[torch.Tensor]] = {}
    combined, targets = [], []
    for images, labels in tqdm(batches, desc="eval", disable=not show_progress, leave=False):
        with autocast(device, amp):
            output = model(images.to(device))
        for name, logits in output.logits.items():
            heads.setdefault(name, []).append(logits.float().softmax(-1).cpu())
        combined.append(output.probs.float().cpu())
        targets.append(labels.cpu())
    return {k: torch.cat(v) for k, v in heads.items()}, torch.cat(combined), torch.cat(targets)
