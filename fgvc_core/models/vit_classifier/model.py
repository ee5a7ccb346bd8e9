"""A plain timm ViT classifier: one CLS token, one head, cross-entropy; explained by attention rollout and ViT CAMs.

It composes what RAMS-Trans already runs on a timm ViT (``fgvc_core.models.rams_trans.vit``: the block-by-block
pass that returns every block's attention without hooks, the local-weights loader, the hybrid patch embeddings) and
the rollout maths of ``fgvc_core.ops.rollout``; it owns only its options, loss and trace. RAMS-Trans with
``num_scales=1`` computes the same function; this model exists as the registry's third, independent face (its own
options, no DPPM), and as the baseline a user's own fine-tuned timm ViT is loaded into.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from fgvc_core.errors import ConfigError
from fgvc_core.models.base import FGVCModel, ModelOutput, check_input_cache
from fgvc_core.models.rams_trans import vit as vitlib
from fgvc_core.models.vit_classifier.trace import HEAD, AttentionState, VitTrace
from fgvc_core.models.weights import LoadReport
from fgvc_core.ops.rollout import attention_rollout, check_rollout_options


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _side(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def build_vit_classifier(
    num_classes: int,
    backbone: str = "vit_base_patch16_224",
    img_size: int = 224,
    patch_size: int | None = None,
    head_fusion: str = "mean",
    rollout_query: str = "cls",
    discard_ratio: float = 0.0,
    start_layer: int = 0,
    drop_rate: float = 0.0,
    vit_kwargs: Mapping[str, Any] | None = None,
    patch_embed: str = "linear",
    pretrained: str | Path | None = None,
    **unknown: Any,
) -> VitClassifier:
    """Build a timm ViT classifier (random init unless ``pretrained`` names a local file).

    Args:
        num_classes: number of classes (>= 2).
        backbone: a timm ViT name (``vit_tiny_patch16_224`` + ``vit_kwargs`` for small CPU models).
        img_size: square network input side, a multiple of the patch size.
        patch_size: patch side; None keeps the backbone's.
        head_fusion, rollout_query, discard_ratio, start_layer: the default rollout options of ``trace`` (as
            RAMS-Trans's; ``trace`` overrides them per call).
        drop_rate: dropout after the position embedding and inside every MLP (timm's pos/proj drop).
        vit_kwargs: extra ``timm.create_model`` arguments (``depth``, ``embed_dim``, ``num_heads``...).
        patch_embed: ``"linear"`` (timm's) or a hybrid embedding of ``fgvc_core.models.rams_trans.conv_stem``.
        pretrained: a local timm state dict (``.safetensors``/``.pth``) or Google ``.npz``; never downloaded.

    Raises:
        ConfigError: an invalid or unknown option.
        CheckpointError: ``pretrained`` cannot be read or fits nothing.
    """
    if unknown:
        raise ConfigError(f"unknown vit_classifier option(s): {', '.join(sorted(unknown))}")
    vit_kwargs = vitlib.check_vit_build(num_classes, backbone, drop_rate, vit_kwargs)
    side = _side(img_size, "img_size")
    patch = None if patch_size is None else _side(patch_size, "patch_size")
    depth = int(vit_kwargs.get("depth", 1_000_000))  # checked again against the real depth once the ViT exists
    check_rollout_options(head_fusion, rollout_query, discard_ratio, start_layer, depth)
    vit = vitlib.create_vit(
        backbone, num_classes, (side, side), None if patch is None else (patch, patch), float(drop_rate), vit_kwargs,
        patch_embed,
    )  # fmt: skip
    check_rollout_options(head_fusion, rollout_query, discard_ratio, start_layer, len(vit.blocks))
    (gh, gw), (ph, pw), (h, w) = vitlib.grid_geometry(vit)
    if (gh * ph, gw * pw) != (h, w):
        raise ConfigError(f"img_size {h}x{w} must be a multiple of the patch size {ph}x{pw}")
    config = {
        "num_classes": num_classes,
        "backbone": backbone,
        "img_size": side,
        "patch_size": patch,
        "head_fusion": head_fusion,
        "rollout_query": rollout_query,
        "discard_ratio": float(discard_ratio),
        "start_layer": start_layer,
        "drop_rate": float(drop_rate),
        "vit_kwargs": vit_kwargs,
        "patch_embed": patch_embed,
    }
    model = VitClassifier(config, vit)
    if pretrained is not None:
        model.pretrained_report = vitlib.load_vit_weights(model.vit, pretrained)
    return model


class VitClassifier(FGVCModel):
    """A timm ViT with one head. Build it with :func:`build_vit_classifier` (``build_model("vit_classifier")``)."""

    model_name = "vit_classifier"
    head_names = (HEAD,)

    def __init__(self, config: dict[str, Any], vit: nn.Module) -> None:
        super().__init__(config)
        self.vit = vit
        self.pretrained_report: LoadReport | None = None
        self._grid, _, self._size = vitlib.grid_geometry(vit)

    def cls_token(self, scale: int = 0) -> nn.Parameter:
        """The CLS token (one scale: the ViT CAMs of ``explain.attribution.vit_cam`` ask for scale 0)."""
        if scale != 0:
            raise ConfigError(f"a ViT classifier has one scale (0), got {scale!r}")
        return self.vit.cls_token

    def no_weight_decay(self) -> set[str]:
        """Like timm: no weight decay on the position embedding and the CLS token."""
        return {"vit.pos_embed", "vit.cls_token"}

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[-2:]) != self._size:
            h, w = self._size
            raise ConfigError(f"the ViT classifier expects input (B, C, {h}, {w}), got {tuple(x.shape)}")

    def _forward(self, x: torch.Tensor, training: bool) -> ModelOutput:
        self._check_input(x)
        logits, _ = vitlib.forward_scale(self.vit, x, self.vit.cls_token, training)
        return ModelOutput(logits={HEAD: logits}, probs=F.softmax(logits.float(), dim=-1))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return self._forward(x, self.training)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(B, K)`` with eval behaviour (no dropout), without touching ``.training``."""
        return self._forward(x, training=False).probs

    def loss(self, output: ModelOutput, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of the one head."""
        ce = F.cross_entropy(output.logits[HEAD].float(), target)
        return ce, {"ce_vit": float(ce.detach()), "loss": float(ce.detach())}

    @torch.no_grad()
    def trace(
        self,
        x: torch.Tensor | None,
        head_fusion: str | None = None,
        rollout_query: str | None = None,
        discard_ratio: float | None = None,
        start_layer: int | None = None,
        cache: AttentionState | None = None,
    ) -> VitTrace:
        """The prediction, every block's attention and its rollout, with rollout options overridden for this call.

        Args:
            x: network input ``(B, C, H, W)``; may be None when ``cache`` is given.
            head_fusion, rollout_query, discard_ratio, start_layer: overrides of the build options.
            cache: ``trace.cache`` of an earlier trace of the same input by this model: no ViT pass, only the
                rollout is recomputed.
        """
        c = self.config
        options = {
            "head_fusion": c["head_fusion"] if head_fusion is None else head_fusion,
            "rollout_query": c["rollout_query"] if rollout_query is None else rollout_query,
            "discard_ratio": c["discard_ratio"] if discard_ratio is None else discard_ratio,
            "start_layer": c["start_layer"] if start_layer is None else start_layer,
        }
        check_rollout_options(*options.values(), depth=len(self.vit.blocks))
        state = self._state(x, cache)
        scores = attention_rollout(
            state.attentions, options["head_fusion"], float(options["discard_ratio"]), options["rollout_query"],
            options["start_layer"],
        )  # fmt: skip
        return VitTrace(
            probs=F.softmax(state.logits, dim=-1),
            attentions=state.attentions,
            rollout=scores.view(-1, *self._grid),
            options=options,
            cache=state,
        )

    def _state(self, x: torch.Tensor | None, cache: AttentionState | None) -> AttentionState:
        if cache is not None:
            return check_input_cache(cache, AttentionState, self, x)
        if x is None:
            raise ConfigError("trace needs an input x (or cache=an earlier trace's cache)")
        self._check_input(x)
        logits, attentions = vitlib.forward_scale(self.vit, x.to(self.vit.cls_token.device), self.vit.cls_token,
                                                  False, "heads")  # fmt: skip
        return AttentionState(
            x=x.detach().cpu(),
            attentions=tuple(a.float().cpu() for a in attentions),
            logits=logits.float().cpu(),
            config=dict(self.config),
            owner=id(self),
        )
