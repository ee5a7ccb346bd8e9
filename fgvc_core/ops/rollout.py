"""Attention rollout (Abnar & Zuidema 2020) and gradient rollout, batched, as row-vector chains.

Rollout multiplies the residual-augmented, row-normalised attention of every layer,
``R = Â_L · Â_{L-1} · … · Â_1`` with ``Â_l = rownorm(fuse_heads(A_l) + I)``, and reads the patch scores off one
row of ``R`` (the CLS row, or the mean of all rows). A row of a product is a row vector times the chain, so
``v ← v·Â_L, v ← v·Â_{L-1}, …`` gives the same scores in O(L·N²) instead of the O(L·N³) matrix chain; this matters
at 448 px / 16 px patches (N = 785), and it lets the RAMS-Trans threshold slider recompute the rollout instantly.

This module is pure tensor maths (no model, no timm) in ``fgvc_core.ops``, below both ``models`` (the DPPM) and
``explain``/the app, which import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fgvc_core.errors import ConfigError

HEAD_FUSIONS = ("mean", "max", "min")
QUERIES = ("cls", "mean")


def _layers(attentions: Sequence[torch.Tensor] | torch.Tensor, name: str) -> list[torch.Tensor]:
    """List of ``(B, H, N, N)`` or a stacked ``(L, B, H, N, N)`` -> a checked list of per-layer views (no copy).

    Never ``torch.stack``: at 448 px a ViT-B's 12 × 12 heads of 785² probabilities are 355 MB, and copying them
    once costs more than the whole rollout.
    """
    layers = list(attentions.unbind(0)) if isinstance(attentions, torch.Tensor) and attentions.dim() == 5 else None
    if layers is None:
        if isinstance(attentions, torch.Tensor) or len(attentions) == 0:
            got = f"shape {tuple(attentions.shape)}" if isinstance(attentions, torch.Tensor) else "an empty list"
            raise ConfigError(f"{name} must be (L, B, H, N, N) or a list of (B, H, N, N); got {got}")
        layers = list(attentions)
    first = layers[0].shape
    for a in layers:
        if a.dim() != 4 or a.shape[-1] != a.shape[-2] or a.shape != first:
            raise ConfigError(
                f"{name} must be (L, B, H, N, N) or a list of equal (B, H, N, N); got a layer of shape {tuple(a.shape)}"
            )
    return layers


def fuse_layers(attentions: Sequence[torch.Tensor] | torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """Head-fused ``(L, B, N, N)`` float maps, fusing one layer at a time (reads every head once, copies none).

    The rollout of a fixed input is a function of these maps alone, so a caller that re-runs it with other
    options (the DPPM threshold slider) can fuse once and pass the result to :func:`fused_rollout`. An unknown
    ``head_fusion`` raises ConfigError (from :func:`fuse_heads`).
    """
    return torch.stack([fuse_heads(a.float(), head_fusion) for a in _layers(attentions, "attentions")])


def _check_options(head_fusion: str, discard_ratio: float, query: str, start_layer: int, num_layers: int) -> None:
    if head_fusion not in HEAD_FUSIONS:
        raise ConfigError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
    if query not in QUERIES:
        raise ConfigError(f"query must be one of {', '.join(QUERIES)}, got {query!r}")
    if not 0.0 <= float(discard_ratio) < 1.0:
        raise ConfigError(f"discard_ratio must be in [0, 1), got {discard_ratio!r}")
    if not isinstance(start_layer, int) or not 0 <= start_layer < num_layers:
        raise ConfigError(f"start_layer must be an integer in [0, {num_layers - 1}], got {start_layer!r}")


def check_rollout_options(
    head_fusion: Any, rollout_query: Any, discard_ratio: Any, start_layer: Any, depth: int
) -> None:
    """Validate a model's rollout build/trace options at the door (ConfigError, one line, in the option's own name)."""
    if head_fusion not in HEAD_FUSIONS:
        raise ConfigError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
    if rollout_query not in QUERIES:
        raise ConfigError(f"rollout_query must be one of {', '.join(QUERIES)}, got {rollout_query!r}")
    number = isinstance(discard_ratio, (int, float)) and not isinstance(discard_ratio, bool)
    if not number or not 0 <= discard_ratio < 1:  # NaN and inf fail the range too
        raise ConfigError(f"discard_ratio must be in [0, 1), got {discard_ratio!r}")
    if isinstance(start_layer, bool) or not isinstance(start_layer, int) or not 0 <= start_layer < depth:
        raise ConfigError(f"start_layer must be an integer in [0, {depth - 1}], got {start_layer!r}")


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """Fuse the head axis (``-3``) of ``(..., H, N, N)`` attention by mean, max or min."""
    if head_fusion == "mean":
        return attention.mean(dim=-3)
    if head_fusion == "max":
        return attention.amax(dim=-3)
    if head_fusion == "min":
        return attention.amin(dim=-3)
    raise ConfigError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")


def _discard_lowest(fused: torch.Tensor, discard_ratio: float, num_prefix_tokens: int) -> torch.Tensor:
    """Zero the ``discard_ratio`` lowest attentions of every row among the patch columns.

    vit-explain's idea, without its bugs: it ranks the whole flattened matrix of batch item 0 only and protects
    just the (0, 0) entry. Here every row of every item is treated alike and the prefix (CLS) columns are never
    dropped, so the CLS token's own flow survives any ratio.
    """
    patches = fused[..., num_prefix_tokens:]
    k = int(patches.shape[-1] * discard_ratio)
    if k == 0:
        return fused
    lowest = patches.topk(k, dim=-1, largest=False).indices
    kept = patches.scatter(-1, lowest, 0.0)
    return torch.cat([fused[..., :num_prefix_tokens], kept], dim=-1)


def _chain(fused: torch.Tensor, discard_ratio: float, query: str, start_layer: int, num_prefix_tokens: int):
    """Row-vector rollout over head-fused ``(L, B, N, N)`` maps -> max-normalised ``(B, N - prefix)`` scores."""
    num_layers, batch, n, _ = fused.shape
    if query == "cls":
        v = torch.zeros(batch, 1, n, dtype=fused.dtype, device=fused.device)
        v[:, 0, 0] = 1.0
    else:  # the mean of all N rows of R (the official code averages every token's row)
        v = torch.full((batch, 1, n), 1.0 / n, dtype=fused.dtype, device=fused.device)
    # R = Â_L ⋯ Â_start, so the row vector meets the last layer first.
    for layer in range(num_layers - 1, start_layer - 1, -1):
        a = fused[layer]
        if discard_ratio > 0:
            a = _discard_lowest(a, discard_ratio, num_prefix_tokens)
        # Â = D⁻¹(A + I) with D = diag(rowsum(A) + 1): every ROW is divided by its sum (vit-explain divides
        # columns). v·Â = u·A + u with u = v D⁻¹, which never builds the N×N temporaries A + I and Â.
        u = v / (a.sum(dim=-1).unsqueeze(1) + 1.0)
        v = torch.baddbmm(u, u, a)
    scores = v[:, 0, num_prefix_tokens:]
    # Max-normalised: the DPPM threshold compares against the mean, which is scale-free, and the app shows maps
    # in [0, 1]; the max is positive because every Â has a positive diagonal.
    return scores / scores.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


def attention_rollout(
    attentions: Sequence[torch.Tensor] | torch.Tensor,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    query: str = "cls",
    start_layer: int = 0,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Patch scores from the attention probabilities of every layer.

    Args:
        attentions: softmax attention per layer, a list of ``(B, H, N, N)`` or a stacked ``(L, B, H, N, N)``
            (``H`` may be 1 for maps fused beforehand; mean/max/min of one head is that head).
        head_fusion: ``"mean"`` (paper), ``"max"`` or ``"min"`` over heads.
        discard_ratio: fraction of the lowest patch attentions of every row set to 0 before adding ``I``.
        query: ``"cls"`` reads the CLS row of ``R`` (paper); ``"mean"`` averages all rows (official code).
        start_layer: first layer in the chain (0-based); earlier layers are left out.
        num_prefix_tokens: leading non-patch tokens (the CLS token); their columns are never discarded.

    Returns:
        ``(B, N - num_prefix_tokens)`` float scores in row-major patch order, each row divided by its max.
    """
    layers = _layers(attentions, "attentions")
    _check_options(head_fusion, discard_ratio, query, start_layer, len(layers))
    return _chain(fuse_layers(layers, head_fusion), float(discard_ratio), query, start_layer, num_prefix_tokens)


def fused_rollout(
    fused: torch.Tensor,
    discard_ratio: float = 0.0,
    query: str = "cls",
    start_layer: int = 0,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """:func:`attention_rollout` over maps fused beforehand by :func:`fuse_layers`, ``(L, B, N, N)``.

    Equal to ``attention_rollout(attentions, head_fusion, ...)`` when ``fused = fuse_layers(attentions,
    head_fusion)``; it skips reading every head again, which is most of a 448 px rollout.
    """
    if fused.dim() != 4 or fused.shape[-1] != fused.shape[-2]:
        raise ConfigError(f"fused maps must be (L, B, N, N), got shape {tuple(fused.shape)}")
    _check_options("mean", discard_ratio, query, start_layer, fused.shape[0])
    return _chain(fused.float(), float(discard_ratio), query, start_layer, num_prefix_tokens)


def gradient_rollout(
    attentions: Sequence[torch.Tensor] | torch.Tensor,
    gradients: Sequence[torch.Tensor] | torch.Tensor,
    discard_ratio: float = 0.0,
    query: str = "cls",
    start_layer: int = 0,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Class-specific rollout: each layer's map is ``mean_heads(clamp(A ⊙ ∂y_c/∂A, min=0))`` before the chain.

    The clamp comes before the head mean (Chefer et al.'s order), so one head's negative evidence cannot cancel
    another head's positive evidence; vit-explain means first and clamps after. Get the gradients with
    ``RamsTrans.attention_gradients`` (no hooks are left on the model).

    Args:
        attentions: probabilities per layer, as in :func:`attention_rollout` (full heads).
        gradients: gradients of the target logit w.r.t. those probabilities, same shapes.
        discard_ratio, query, start_layer, num_prefix_tokens: as in :func:`attention_rollout`.

    Returns:
        ``(B, N - num_prefix_tokens)`` max-normalised scores.
    """
    a = _layers(attentions, "attentions")
    g = _layers(gradients, "gradients")
    if len(a) != len(g) or a[0].shape != g[0].shape:
        raise ConfigError(
            f"attentions ({len(a)} × {tuple(a[0].shape)}) and gradients ({len(g)} × {tuple(g[0].shape)}) "
            "must have the same shape"
        )
    _check_options("mean", discard_ratio, query, start_layer, len(a))
    fused = torch.stack([(ai.float() * gi.float()).clamp_min(0.0).mean(dim=-3) for ai, gi in zip(a, g)])
    return _chain(fused, float(discard_ratio), query, start_layer, num_prefix_tokens)
