"""Naive re-computations, the one oracle module that tests and benchmarks share (written for clarity, not speed).

Each function computes what our code computes, the way a straightforward port of the official code (or of the
definition) would; the tests compare our fast paths with them and ``benchmarks/`` times both:

- :func:`naive_bilinear`: ``align_corners=False`` bilinear resize as PyTorch defines it, with Python loops;
- rollout as the O(L·N³) matrix chain ``R = Â_L ⋯ Â_1``, then one row of R (Abnar & Zuidema, vit-explain);
- RAMS-Trans training forward (:func:`naive_rams_forward`): fp32, eager, explicit softmax attention in every block
  of every scale with the probabilities kept *inside* the autograd graph (what timm's ``fused_attn=False`` plus
  hooks on ``attn_drop`` does), the connected components per image on the CPU with ``scipy.ndimage.label`` after
  a device->host copy, and one ``F.interpolate`` crop per image;
- per-stage Grad-CAM as one single-stage CAM call per stage (3 forwards and 3 backwards);
- optimizer: SGD with a plain per-parameter loop (``foreach=False``, ``fused=False``).

It imports only from the library's layers below it (``ops.rollout``, ``models``), never from ``tests`` or
``benchmarks``; ``tests/naive.py`` and ``benchmarks/naive.py`` re-export it under their old names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

from fgvc_core.models.base import ModelOutput
from fgvc_core.ops.rollout import fuse_heads

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def matrix_chain_rollout(
    attentions: Sequence[torch.Tensor] | torch.Tensor,
    head_fusion: str = "mean",
    query: str = "cls",
    start_layer: int = 0,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Rollout as the full N×N product of every layer, then the CLS row (or the mean row), max-normalised.

    Args:
        attentions: ``(B, H, N, N)`` per layer, or stacked ``(L, B, H, N, N)``.
        head_fusion, query, start_layer, num_prefix_tokens: as in ``fgvc_core.explain.attention_rollout``
            (without ``discard_ratio``).

    Returns:
        ``(B, N - num_prefix_tokens)`` scores, the same as ``attention_rollout`` up to float rounding.
    """
    joint = None
    for layer in range(start_layer, len(attentions)):
        a = fuse_heads(attentions[layer].float(), head_fusion)
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        joint = a if joint is None else a @ joint  # R_l = Â_l · R_{l-1}: O(N³) per layer
    rows = joint[:, 0] if query == "cls" else joint.mean(dim=1)
    scores = rows[:, num_prefix_tokens:]
    return scores / scores.amax(dim=-1, keepdim=True)


def scipy_box(scores: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """One image's DPPM box in grid cells (xyxy, exclusive end), with scipy's 8-connected labelling.

    ``scores`` is ``(gh, gw)``. Mask ``s > α·mean(s)``; the largest component wins (ties: the lowest label, i.e.
    the first in raster order); an empty mask gives the whole grid.
    """
    mask = scores > threshold * scores.mean()
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    if count == 0:
        return 0, 0, scores.shape[1], scores.shape[0]
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    rows, cols = np.nonzero(labels == int(sizes.argmax()))
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def naive_rams_forward(model: nn.Module, x: torch.Tensor, training: bool = True) -> ModelOutput:
    """RAMS-Trans forward the plain way (see the module docstring); same outputs as ``model(x)``'s structure.

    Uses the model's own weights and options (threshold, head fusion, query, start layer); ``discard_ratio`` must
    be 0. Scale ``s + 1`` is cut from scale ``s``'s image with integer pixel boxes, as the official two-scale code
    does.
    """
    from fgvc_core.models.rams_trans import vit as vitlib  # timm: only the RAMS-Trans oracle needs it

    opts = model.options
    if opts.discard_ratio > 0:
        raise ValueError("the naive baseline implements discard_ratio=0 only")
    (gh, gw), (ph, pw), (h, w) = vitlib.grid_geometry(model.vit)
    current = x
    whole = torch.tensor([0.0, 0.0, w, h], device=x.device).expand(x.shape[0], 4)
    box = whole
    logits, boxes = {}, []
    for s, name in enumerate(model.head_names):
        # "graph": explicit softmax, probabilities saved for backward in every block, on every scale.
        logits[name], attentions = vitlib.forward_scale(model.vit, current, model.cls_token(s), training, "graph")
        boxes.append(box)
        if s == model.num_scales - 1:
            break
        with torch.no_grad():
            scores = matrix_chain_rollout(
                [a.detach() for a in attentions], opts.head_fusion, opts.query, opts.start_layer
            )
            crops, cell_boxes = [], []
            for i in range(x.shape[0]):
                grid = scores[i].view(gh, gw).cpu().numpy()  # a device->host copy per image
                x0, y0, x1, y1 = scipy_box(grid, opts.threshold(s))
                cell_boxes.append((x0, y0, x1, y1))
                patch = current[i : i + 1, :, y0 * ph : y1 * ph, x0 * pw : x1 * pw]
                crops.append(F.interpolate(patch, size=(h, w), mode="bilinear", align_corners=False))
            inner = torch.tensor(cell_boxes, dtype=torch.float32, device=x.device)
            inner = inner * torch.tensor([pw, ph, pw, ph], dtype=torch.float32, device=x.device)
            box = _compose(box, inner, (h, w))
            current = torch.cat(crops)
    probs = torch.stack([F.softmax(v.float(), dim=-1) for v in logits.values()]).mean(dim=0)
    return ModelOutput(logits=logits, probs=probs, aux={"boxes": torch.stack(boxes, dim=1)})


def _compose(outer: torch.Tensor, inner: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """A box found on a crop of ``outer`` (resized to ``size_hw``) in the frame of the input."""
    h, w = size_hw
    scale = torch.stack([(outer[:, 2] - outer[:, 0]) / w, (outer[:, 3] - outer[:, 1]) / h], dim=1).repeat(1, 2)
    return outer[:, :2].repeat(1, 2) + inner * scale


def naive_optimizer(groups: dict[str, list[nn.Parameter]], lrs: dict[str, float], momentum: float, weight_decay: float):
    """SGD over the same parameter groups as ours, with the per-parameter Python loop (no foreach, no fusion)."""
    params = [{"params": groups[name], "lr": lrs[name]} for name in groups]
    return torch.optim.SGD(
        params, lr=max(lrs.values()), momentum=momentum, weight_decay=weight_decay, foreach=False, fused=False
    )


def naive_train_step(
    forward: Callable[[torch.Tensor], ModelOutput],
    loss_fn: Callable[[ModelOutput, torch.Tensor], tuple[torch.Tensor, dict[str, float]]],
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    targets: torch.Tensor,
    grad_clip: float = 0.0,
) -> float:
    """One fp32 eager step (forward, loss, backward, optional clip without foreach, step); returns the loss."""
    output = forward(images)
    loss, _ = loss_fn(output, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        nn.utils.clip_grad_norm_(params, grad_clip, foreach=False)
    optimizer.step()
    return loss.item()  # the official loop logs the loss every step: one host sync, as ours does


def separate_stage_cams(model: nn.Module, x: torch.Tensor, stages: Sequence[int] = (3, 4, 5), **options):
    """Per-stage CAMs the plain way: one single-stage ``stage_cams`` call (a forward and a backward) per stage."""
    from fgvc_core.explain.attribution.cam import stage_cams

    maps = {}
    for stage in stages:
        maps.update(stage_cams(model, x, stages=(stage,), **options))
    return maps


def naive_bilinear(m, out_h, out_w):
    """align_corners=False bilinear, as PyTorch defines it (source index clamped at 0)."""
    in_h, in_w = m.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        sy = max((i + 0.5) * in_h / out_h - 0.5, 0.0)
        y0 = int(math.floor(sy))
        y1, ly = min(y0 + 1, in_h - 1), sy - y0
        for j in range(out_w):
            sx = max((j + 0.5) * in_w / out_w - 0.5, 0.0)
            x0 = int(math.floor(sx))
            x1, lx = min(x0 + 1, in_w - 1), sx - x0
            out[i, j] = (1 - ly) * ((1 - lx) * m[y0, x0] + lx * m[y0, x1]) + ly * (
                (1 - lx) * m[y1, x0] + lx * m[y1, x1]
            )
    return out
