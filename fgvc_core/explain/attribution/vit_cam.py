"""Grad-CAM family on a RAMS-Trans scale, through pytorch-grad-cam, without touching the shared model.

pytorch-grad-cam's ``BaseCAM`` calls ``model.eval()`` and ``model.zero_grad()`` in its constructor/forward,
registers forward hooks on the target layer and runs ``loss.backward()`` (which writes ``.grad`` on every
parameter). A cached model shared by several app sessions must see none of that, so the CAM runs on a private
copy of the ViT (one deep copy per call: negligible for the demo ViT, ~350 MB and a fraction of a second for
ViT-B) wrapped to classify one scale with that scale's CLS token. Hooks are released by ``with``.

Target layer: ``blocks[layer].norm1``, whose output tokens (minus the CLS token) are reshaped to the patch grid
(pytorch-grad-cam's ViT recipe): the last block's attention is what mixes patch information into the CLS token.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn as nn

from fgvc_core.errors import ConfigError
from fgvc_core.explain.attribution.methods import VIT, cam_class, methods_for

# The ViT rows of the one CAM table (labels, costs and library classes live there).
CAM_METHODS: tuple[str, ...] = methods_for(VIT)


def _cam_class(method: str) -> type:
    if method not in CAM_METHODS:
        raise ConfigError(f"method must be one of {', '.join(CAM_METHODS)}, got {method!r}")
    return cam_class(method)


class _ScaleClassifier(nn.Module):
    """A private copy of the shared ViT that classifies one scale (its CLS token) in eval behaviour."""

    def __init__(self, vit: nn.Module, cls_token: torch.Tensor) -> None:
        super().__init__()
        self.vit = copy.deepcopy(vit)
        self.cls_token = nn.Parameter(cls_token.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from fgvc_core.models.rams_trans.vit import forward_scale

        return forward_scale(self.vit, x, self.cls_token, training=False)[0]


def tokens_to_grid(grid_hw: tuple[int, int], num_prefix_tokens: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """pytorch-grad-cam ``reshape_transform``: ``(B, N, C)`` tokens -> ``(B, C, gh, gw)`` patch maps."""
    gh, gw = grid_hw

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, num_prefix_tokens:, :]
        return patches.reshape(tokens.shape[0], gh, gw, tokens.shape[-1]).permute(0, 3, 1, 2)

    return reshape


def rams_trans_cam(
    model: nn.Module,
    x: torch.Tensor,
    target: int | list[int] | None = None,
    scale: int = 0,
    method: str = "gradcam",
    layer: int = -1,
) -> torch.Tensor:
    """A CAM for one RAMS-Trans scale, resized to the input and min-max scaled to [0, 1] per image.

    Args:
        model: a ``RamsTrans`` model (left untouched).
        x: that scale's input ``(B, C, H, W)`` (``trace.scales[s].crop`` for ``s > 0``).
        target: class index, one per image, or None for each image's predicted class.
        scale: 0-based scale whose CLS token classifies.
        method: one of ``CAM_METHODS`` (the ``"vit"`` rows of ``methods.CAM_TABLE``).
        layer: block index whose ``norm1`` output is explained.

    Returns:
        ``(B, H, W)`` float32 CPU tensor.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = _cam_class(method)
    if not 0 <= scale < len(model.head_names):
        raise ConfigError(f"scale must be in [0, {len(model.head_names) - 1}], got {scale!r}")
    depth = len(model.vit.blocks)
    if not -depth <= layer < depth:
        raise ConfigError(f"layer must be a block index in [{-depth}, {depth - 1}], got {layer!r}")
    wrapper = _ScaleClassifier(model.vit, model.cls_token(scale))
    grid = tuple(int(v) for v in model.vit.patch_embed.grid_size)
    if target is None:
        targets = None
    else:
        classes = [target] * x.shape[0] if isinstance(target, int) else list(target)
        if len(classes) != x.shape[0]:
            raise ConfigError(f"got {len(classes)} targets for {x.shape[0]} images")
        targets = [ClassifierOutputTarget(int(c)) for c in classes]
    with (
        torch.enable_grad(),
        cam_class(
            model=wrapper, target_layers=[wrapper.vit.blocks[layer].norm1], reshape_transform=tokens_to_grid(grid)
        ) as cam,
    ):
        maps = cam(input_tensor=x.detach(), targets=targets)
    return torch.from_numpy(maps).float()
