"""Perturbation metrics: does removing what a map calls relevant change the prediction?

- `deletion_insertion_auc`: deletion / insertion curves and their areas (Petsiuk et al., RISE 2018).
- `road_scores`: ROAD (Rong et al., 2022) through pytorch-grad-cam's ``metrics.road``.

They share the map conventions of `fgvc_core.explain.scoring.metrics` (maps ``(B, h, w)``, upsampled bilinearly to
the image; both read maps through :mod:`fgvc_core.explain.scoring.maps`). Results are numpy arrays, one value (or
curve) per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from fgvc_core.errors import ConfigError
from fgvc_core.explain.scoring.maps import ArrayLike, as_maps, to_frame

SUBSTRATES = ("mean", "blur", "zero")
ROAD_PERCENTILES = (20, 40, 60, 80)


def _substrate(images: torch.Tensor, kind: str, blur_sigma: float) -> torch.Tensor:
    if kind == "zero":
        return torch.zeros_like(images)
    if kind == "mean":
        return images.mean(dim=(-2, -1), keepdim=True).expand_as(images)
    from torchvision.transforms.functional import gaussian_blur

    # An odd kernel of +-3 sigma, cut to the largest odd size that reflect padding allows on a small image.
    size = min(2 * math.ceil(3 * blur_sigma) + 1, 2 * min(images.shape[-2:]) - 1)
    return gaussian_blur(images, [size, size], [blur_sigma, blur_sigma])


def _relevance_ranks(maps: torch.Tensor) -> torch.Tensor:
    """``(B, N)``: rank of each pixel, 0 = most relevant; ties in row-major order (stable sort)."""
    flat = maps.reshape(len(maps), -1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order).contiguous())
    return ranks


def _targets(model_fn: Callable, images: torch.Tensor, target_classes: ArrayLike | None) -> torch.Tensor:
    probs = model_fn(images)
    if probs.dim() != 2 or len(probs) != len(images):
        raise ConfigError(f"model_fn must return (B, K) probabilities, got shape {tuple(probs.shape)}")
    if target_classes is None:
        return probs.argmax(dim=1)
    t = torch.as_tensor(np.asarray(target_classes), dtype=torch.long, device=probs.device).reshape(-1)
    if len(t) == 1:
        t = t.expand(len(images))
    if len(t) != len(images) or t.min() < 0 or t.max() >= probs.shape[1]:
        raise ConfigError(f"target_classes must be {len(images)} class indices in [0, {probs.shape[1]})")
    return t


def deletion_insertion_auc(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    maps: ArrayLike,
    target_classes: ArrayLike | None = None,
    steps: int = 10,
    deletion_substrate: str = "mean",
    insertion_substrate: str = "blur",
    blur_sigma: float = 5.0,
) -> dict[str, np.ndarray]:
    """Deletion and insertion curves (Petsiuk et al., RISE 2018) and their areas, per image.

    Pixels are ranked by the map (upsampled bilinearly to the image; ties in row-major order). At step
    ``k = 0..steps`` the ``n_k = round(k N / steps)`` most relevant of the ``N`` pixels are
    - **deleted**: replaced by the deletion substrate, the rest kept; a good map makes the target probability
      fall fast (low AUC is good);
    - **inserted**: copied onto the insertion substrate; a good map makes it rise fast (high AUC is good).
    AUC is the trapezoid rule over the fraction ``n_k / N`` in [0, 1].

    Substrates: ``"mean"`` (each image's per-channel mean: the pixel carries no local information but stays
    in-distribution), ``"blur"`` (Gaussian blur, ``blur_sigma`` px) or ``"zero"`` (zeros of the input tensor,
    i.e. the dataset mean colour for a normalised input). Defaults: delete to the mean, insert onto a blur (RISE's
    insertion canvas; its deletion used black, which a blurred or mean canvas avoids as an out-of-distribution cue).

    Args:
        model_fn: ``(B, C, H, W) -> (B, K)`` probabilities, each image scored independently (eval mode); it is
            called under ``torch.no_grad`` once per step for the deletion and insertion batches together.
        images: ``(B, C, H, W)`` model inputs.
        maps: ``(B, h, w)`` relevance maps.
        target_classes: ``(B,)`` or one class; default the model's top class on the clean image.
        steps: number of steps (>= 1).

    Returns:
        ``fractions`` ``(steps + 1,)``, ``deletion_curve`` / ``insertion_curve`` ``(B, steps + 1)`` target
        probabilities, ``deletion_auc`` / ``insertion_auc`` ``(B,)``.
    """
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    for kind in (deletion_substrate, insertion_substrate):
        if kind not in SUBSTRATES:
            raise ConfigError(f"substrate must be one of {SUBSTRATES}, got {kind!r}")
    if not blur_sigma > 0:
        raise ConfigError(f"blur_sigma must be > 0 pixels, got {blur_sigma!r}")
    if images.dim() != 4:
        raise ConfigError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    b, _, h, w = images.shape
    m = as_maps(maps)
    if len(m) != b:
        raise ConfigError(f"{len(m)} maps for {b} images")
    ranks = _relevance_ranks(to_frame(m, (h, w), "bilinear")).to(images.device).view(b, 1, h, w)
    counts = [round(k * h * w / steps) for k in range(steps + 1)]
    curves = torch.zeros(2, b, steps + 1, dtype=torch.float64)
    with torch.no_grad():
        targets = _targets(model_fn, images, target_classes)
        delete_to = _substrate(images, deletion_substrate, blur_sigma)
        insert_on = _substrate(images, insertion_substrate, blur_sigma)
        rows = torch.arange(2 * b, device=targets.device)
        for k, n in enumerate(counts):
            chosen = ranks < n
            batch = torch.cat([torch.where(chosen, delete_to, images), torch.where(chosen, images, insert_on)])
            probs = model_fn(batch)[rows, targets.repeat(2)]
            curves[:, :, k] = probs.detach().to("cpu", torch.float64).view(2, b)
    fractions = np.array(counts, dtype=np.float64) / (h * w)
    curves_np = curves.numpy()
    auc = ((curves_np[..., 1:] + curves_np[..., :-1]) / 2 * np.diff(fractions)).sum(axis=-1)
    return {
        "fractions": fractions,
        "deletion_curve": curves_np[0],
        "insertion_curve": curves_np[1],
        "deletion_auc": auc[0],
        "insertion_auc": auc[1],
    }


def road_scores(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    maps: ArrayLike,
    target_classes: ArrayLike | None = None,
    percentiles: Sequence[int] = ROAD_PERCENTILES,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """ROAD (Rong et al., 2022) through pytorch-grad-cam's ``ROADMostRelevantFirst`` / ``ROADLeastRelevantFirst``.

    At percentile ``p`` the library removes the ``100 - p`` % most (MoRF) or least (LeRF) relevant pixels and
    fills them by noisy linear imputation from their neighbours, so the hole itself is no cue. Scores are the
    change of the target probability (after - before). ``combined = mean_p (lerf - morf) / 2`` is the library's
    ``ROADCombined``: above 0 when removing what the map calls relevant hurts more than removing the rest. The
    imputation noise is drawn from torch's CPU generator, seeded with ``seed`` inside a forked RNG state.

    Returns:
        ``percentiles`` ``(P,)``, ``morf`` / ``lerf`` ``(B, P)``, ``combined`` ``(B,)``.
    """
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if images.dim() != 4:
        raise ConfigError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if not percentiles or any(not 0 < p < 100 for p in percentiles):
        raise ConfigError(f"percentiles must be numbers in (0, 100), got {percentiles!r}")
    m = as_maps(maps)
    if len(m) != len(images):
        raise ConfigError(f"{len(m)} maps for {len(images)} images")
    cams = to_frame(m, tuple(images.shape[-2:]), "bilinear").float().numpy()
    with torch.no_grad():
        targets = [ClassifierOutputTarget(int(c)) for c in _targets(model_fn, images, target_classes)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # Same order as ROADCombined (all LeRF, then all MoRF), so the noise draws match the library's.
        lerf = [ROADLeastRelevantFirst(p)(images, cams, targets, model_fn) for p in percentiles]
        morf = [ROADMostRelevantFirst(p)(images, cams, targets, model_fn) for p in percentiles]
    lerf_np, morf_np = np.stack(lerf, axis=1).astype(np.float64), np.stack(morf, axis=1).astype(np.float64)
    return {
        "percentiles": np.array(percentiles, dtype=np.float64),
        "morf": morf_np,
        "lerf": lerf_np,
        "combined": ((lerf_np - morf_np) / 2).mean(axis=1),
    }
