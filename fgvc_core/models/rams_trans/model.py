"""RAMS-Trans (Hu et al., ACM MM 2021): one timm ViT applied to recursively zoomed crops, one CLS token per scale.

Scale 1 sees the network input. From scale ``s``'s own attention, the DPPM (attention rollout -> mask -> largest
component -> box) picks the region that scale ``s + 1`` sees, cut from the input tensor and resized to the input
size. Every weight is shared across scales except the CLS token: scale 1 uses ``vit.cls_token`` (so ``model.vit``
stays a working timm model for scale 1, and timm weight files load as they are), scales 2+ use
``extra_cls_tokens[s - 2]``, initialised from the same token. See docs/methods/rams_trans.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from fgvc_core.errors import ConfigError
from fgvc_core.models.base import FGVCModel, ModelOutput, check_input_cache
from fgvc_core.models.rams_trans import dppm
from fgvc_core.models.rams_trans import vit as vitlib
from fgvc_core.models.rams_trans.trace import RamsTransTrace, Scale1State, ScaleTrace, rollout_scores
from fgvc_core.models.weights import LoadReport


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pair(value: Any, name: str, allow_none: bool = False) -> tuple[int, int] | None:
    if value is None and allow_none:
        return None
    pair = [value, value] if isinstance(value, int) else value
    ok = isinstance(pair, Sequence) and len(pair) == 2
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ConfigError(f"{name} must be a positive integer or a pair (height, width), got {value!r}")
    return int(pair[0]), int(pair[1])


def build_rams_trans(
    num_classes: int,
    backbone: str = "vit_base_patch16_224",
    img_size: int | Sequence[int] = 448,
    patch_size: int | Sequence[int] | None = None,
    num_scales: int = 2,
    scale_loss_weights: Sequence[float] | None = None,
    threshold: float | Sequence[float] = 1.2,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    rollout_query: str = "cls",
    start_layer: int = 0,
    drop_rate: float = 0.1,
    vit_kwargs: Mapping[str, Any] | None = None,
    patch_embed: str = "linear",
    pretrained: str | Path | None = None,
    **unknown: Any,
) -> RamsTrans:
    """Build RAMS-Trans on a timm ViT (random init unless ``pretrained`` names a local file).

    Args:
        num_classes: number of classes (>= 2).
        backbone: a timm ViT name (``vit_base_patch16_224``; ``vit_tiny_patch16_224`` + ``vit_kwargs`` for demos).
        img_size: network input side, or ``(height, width)``; must be a multiple of the patch size.
        patch_size: patch side or ``(h, w)``; None keeps the backbone's (the official code ran 32 px patches).
        num_scales: 2 in the paper; 1 is a plain ViT, 3 adds a second zoom.
        scale_loss_weights: ``w_s`` in ``L = Σ w_s CE(logits_s)``, one per scale; None = all 1 (paper figure).
            ``(1, 0)`` is the official code's *loss* (scale 1 only), not its model: there both CLS tokens sit in
            every pass, so scale 1's loss trains the second one too; here scale 2's own CLS token then gets no
            gradient. A zero-weight scale is untrained, so it is left out of the combined prediction (and so
            out of checkpoint selection): with ``(1, 0)`` the model predicts with scale 1 alone.
        threshold: α in ``mask = s > α·mean(s)``: one number for every zoom or one per zoom (official 3-scale
            values: ``[1.2, 1.3]``).
        head_fusion: ``"mean"`` (paper), ``"max"`` or ``"min"`` over attention heads.
        discard_ratio: fraction of the lowest attentions per row dropped before the rollout (vit-explain); 0 = off.
        rollout_query: ``"cls"`` (paper: the CLS row of the rollout) or ``"mean"`` (official code: all rows).
        start_layer: first block in the rollout chain (0 = all).
        drop_rate: the official code's dropout (0.1), mapped to timm's ``pos_drop_rate`` and ``proj_drop_rate``.
        vit_kwargs: extra ``timm.create_model`` arguments (``depth``, ``embed_dim``, ``num_heads``, ...).
        patch_embed: ``"linear"`` (timm's, the paper's) or ``"conv_stem"`` (a few stride-2 convs: lets a small ViT
            trained from scratch learn local part patterns; used by the demo model, see ``conv_stem.py``).
        pretrained: a local ``.safetensors``/``.pth`` timm state dict or a Google ``.npz``; never downloaded.

    Raises:
        ConfigError: an invalid or unknown option (checked before any weight is allocated where possible).
        CheckpointError: ``pretrained`` cannot be read or fits nothing.
    """
    if unknown:
        raise ConfigError(f"unknown rams_trans option(s): {', '.join(sorted(unknown))}")
    vit_kwargs = vitlib.check_vit_build(num_classes, backbone, drop_rate, vit_kwargs)
    size_hw = _pair(img_size, "img_size")
    patch_hw = _pair(patch_size, "patch_size", allow_none=True)
    if isinstance(num_scales, bool) or not isinstance(num_scales, int) or not 1 <= num_scales <= 8:
        raise ConfigError(f"num_scales must be an integer in [1, 8], got {num_scales!r}")
    weights = [1.0] * num_scales if scale_loss_weights is None else scale_loss_weights
    if isinstance(weights, str) or not isinstance(weights, Sequence) or len(weights) != num_scales:
        raise ConfigError(f"scale_loss_weights needs {num_scales} numbers (one per scale), got {scale_loss_weights!r}")
    if not all(_number(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"scale_loss_weights must be >= 0 with a positive sum, got {scale_loss_weights!r}")
    depth = int(vit_kwargs.get("depth", 1_000_000))  # the real depth is checked again once the ViT exists
    dppm.make_options(threshold, head_fusion, rollout_query, discard_ratio, start_layer, num_scales, depth)

    vit = vitlib.create_vit(backbone, num_classes, size_hw, patch_hw, float(drop_rate), vit_kwargs, patch_embed)
    options = dppm.make_options(
        threshold, head_fusion, rollout_query, discard_ratio, start_layer, num_scales, len(vit.blocks)
    )
    (gh, gw), (ph, pw), (h, w) = vitlib.grid_geometry(vit)
    if (gh * ph, gw * pw) != (h, w):
        raise ConfigError(f"img_size {h}x{w} must be a multiple of the patch size {ph}x{pw}")
    config = {
        "num_classes": num_classes,
        "backbone": backbone,
        "img_size": img_size if isinstance(img_size, int) else list(size_hw),
        "patch_size": patch_size if patch_size is None or isinstance(patch_size, int) else list(patch_hw),
        "num_scales": num_scales,
        "scale_loss_weights": [float(v) for v in weights],
        "threshold": float(threshold) if _number(threshold) else [float(v) for v in threshold],
        "head_fusion": head_fusion,
        "discard_ratio": float(discard_ratio),
        "rollout_query": rollout_query,
        "start_layer": start_layer,
        "drop_rate": float(drop_rate),
        "vit_kwargs": vit_kwargs,
        "patch_embed": patch_embed,
    }
    model = RamsTrans(config, vit, options)
    if pretrained is not None:
        model.pretrained_report = model.load_pretrained(pretrained)
    return model


class RamsTrans(FGVCModel):
    """The RAMS-Trans model. Build it with :func:`build_rams_trans` (or ``build_model("rams_trans", ...)``)."""

    model_name = "rams_trans"

    def __init__(self, config: dict[str, Any], vit: nn.Module, options: dppm.DPPMOptions) -> None:
        super().__init__(config)
        self.vit = vit
        num_scales = int(config["num_scales"])
        # Scales 2+ get their own CLS token; everything else (vit.*) is the same Parameter object for all scales.
        self.extra_cls_tokens = nn.ParameterList(
            [nn.Parameter(vit.cls_token.detach().clone()) for _ in range(num_scales - 1)]
        )
        self.head_names = tuple(f"scale{s + 1}" for s in range(num_scales))
        # The heads the combined prediction averages: the trained ones (w_s > 0). An untrained scale's softmax
        # would only add noise to the prediction and to checkpoint selection.
        self.combined_heads = tuple(name for name, w in zip(self.head_names, config["scale_loss_weights"]) if w > 0)
        self.options = options
        self.pretrained_report: LoadReport | None = None
        self._grid, self._patch, self._size = vitlib.grid_geometry(vit)

    # ----------------------------------------------------------------------------------------------- pieces
    @property
    def num_scales(self) -> int:
        return len(self.head_names)

    def cls_token(self, scale: int) -> nn.Parameter:
        """The CLS token of 0-based ``scale``."""
        return self.vit.cls_token if scale == 0 else self.extra_cls_tokens[scale - 1]

    def no_weight_decay(self) -> set[str]:
        """Like timm: no weight decay on position embedding and CLS tokens."""
        names = {"vit.pos_embed", "vit.cls_token"}
        return names | {f"extra_cls_tokens.{i}" for i in range(self.num_scales - 1)}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``vit``: every parameter, except for a hybrid embedding's ResNet layers, which form ``cnn``.

        Those layers usually start pre-trained (the demo: from the CRA-SMRA demo checkpoint) while the transformer
        starts random, so a recipe can give them a smaller learning rate (``train.lr: {cnn: …, vit: …}``); a plain
        float lr treats both alike.
        """
        stem = getattr(self.vit.patch_embed.proj, "backbone", None)
        cnn = list(stem.parameters()) if stem is not None else []
        ids = {id(p) for p in cnn}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return {"cnn": cnn, "vit": rest} if cnn else {"vit": rest}

    def load_pretrained(self, path: str | Path) -> LoadReport:
        """Load local ViT weights (timm state dict or Google ``.npz``); every CLS token starts from the file's."""
        report = vitlib.load_vit_weights(self.vit, path)
        with torch.no_grad():
            for token in self.extra_cls_tokens:
                token.copy_(self.vit.cls_token)
        return report

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[-2:]) != self._size:
            h, w = self._size
            raise ConfigError(f"RAMS-Trans expects input (B, C, {h}, {w}), got {tuple(x.shape)}")

    def _propose(self, attentions, opts: dppm.DPPMOptions, scale: int, head_fusion: str) -> tuple[torch.Tensor, Any]:
        """Rollout + DPPM box; ``attentions`` is per-layer ``(B, H, N, N)`` or a :class:`Scale1State`."""
        scores = rollout_scores(attentions, head_fusion, opts.discard_ratio, opts.query, opts.start_layer)
        proposal = dppm.propose(scores, self._grid, self._patch, opts.threshold(scale))
        return scores.view(-1, *self._grid), proposal

    def _whole(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self._size
        return torch.tensor([[0.0, 0.0, w, h]], device=x.device).expand(x.shape[0], 4)

    # ------------------------------------------------------------------------------------------- forward
    def _forward(self, x: torch.Tensor, training: bool) -> ModelOutput:
        self._check_input(x)
        opts = self.options
        box, current = self._whole(x), x
        logits, boxes = {}, []
        for s, name in enumerate(self.head_names):
            last = s == self.num_scales - 1
            # Only head-fused maps are kept (H times less memory); the rollout then sees one "head".
            mode = None if last else opts.head_fusion
            logits[name], attentions = vitlib.forward_scale(self.vit, current, self.cls_token(s), training, mode)
            boxes.append(box)
            if not last:
                with torch.no_grad():
                    _, proposal = self._propose(attentions, opts, s, "mean")
                    box = dppm.compose_boxes(box, proposal.box, self._size)
                    current = dppm.crop_and_resize(x, box, self._size)
        probs = torch.stack([F.softmax(logits[name].float(), dim=-1) for name in self.combined_heads]).mean(dim=0)
        return ModelOutput(logits=logits, probs=probs, aux={"boxes": torch.stack(boxes, dim=1)})

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """All scales; ``aux["boxes"]`` is ``(B, num_scales, 4)``: where each scale looked, in input pixels."""
        return self._forward(x, self.training)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Combined probabilities ``(B, K)`` with eval behaviour (no dropout), without touching ``.training``."""
        return self._forward(x, training=False).probs

    def loss(self, output: ModelOutput, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``Σ_s w_s · CE(logits_s, target)``; zero-weight scales are logged but left out of the graph."""
        total, parts = None, {}
        for name, weight in zip(self.head_names, self.config["scale_loss_weights"]):
            ce = F.cross_entropy(output.logits[name].float(), target)
            parts[f"ce_{name}"] = float(ce.detach())
            if weight > 0:
                total = weight * ce if total is None else total + weight * ce
        parts["loss"] = float(total.detach())
        return total, parts

    # --------------------------------------------------------------------------------------------- trace
    @torch.no_grad()
    def trace(
        self,
        x: torch.Tensor | None,
        threshold: float | Sequence[float] | None = None,
        head_fusion: str | None = None,
        rollout_query: str | None = None,
        discard_ratio: float | None = None,
        start_layer: int | None = None,
        cache: Scale1State | None = None,
        original_size: tuple[int, int] | Sequence[tuple[int, int]] | None = None,
        preprocess: Mapping[str, Any] | None = None,
    ) -> RamsTransTrace:
        """Every artefact of an eval-mode pass, with DPPM options overridden for this call only.

        Args:
            x: network input ``(B, C, H, W)``; may be None when ``cache`` is given.
            threshold, head_fusion, rollout_query, discard_ratio, start_layer: overrides of the build options.
            cache: ``trace.cache`` of an earlier trace of the same input by this model: its scale-1 attention is
                reused, so only the rollout, the boxes and scales 2+ are recomputed.
            original_size, preprocess: ``(W, H)`` of the uploaded image and the checkpoint's preprocess dict; when
                both are given every scale also gets ``box_original``.

        Never changes the model: no hooks, no attribute writes, no mode flips; results are detached CPU tensors.
        """
        d = self.options
        opts = dppm.make_options(
            d.thresholds if threshold is None else threshold,
            d.head_fusion if head_fusion is None else head_fusion,
            d.query if rollout_query is None else rollout_query,
            d.discard_ratio if discard_ratio is None else discard_ratio,
            d.start_layer if start_layer is None else start_layer,
            self.num_scales,
            len(self.vit.blocks),
        )
        device = self.vit.cls_token.device
        state = self._scale1_state(x, cache, device)
        x_dev = state.x.to(device)
        box = self._whole(state.x)
        scales = []
        for s in range(self.num_scales):
            if s == 0:
                crop, attentions, logits = state.x, state.attentions, state.logits
            else:
                crop, logits, attentions = state.zoom(s, box, lambda s=s, box=box: self._zoomed_pass(x_dev, box, s))
            rollout, proposal = self._propose(state if s == 0 else attentions, opts, s, opts.head_fusion)
            original = None
            if original_size is not None and preprocess is not None:
                original = dppm.boxes_to_original(box, original_size, preprocess)
            scales.append(
                ScaleTrace(
                    index=s,
                    crop=crop,
                    box=box.clone(),
                    box_original=original,
                    attentions=attentions,
                    rollout=rollout,
                    mask=proposal.mask,
                    component=proposal.component,
                    proposal_box=proposal.box,
                    logits=logits,
                    probs=F.softmax(logits, dim=-1),
                )
            )
            box = dppm.compose_boxes(box, proposal.box, self._size)
        probs = torch.stack([sc.probs for sc, name in zip(scales, self.head_names) if name in self.combined_heads])
        probs = probs.mean(dim=0)
        return RamsTransTrace(scales=tuple(scales), probs=probs, options=opts.as_dict(), cache=state)

    def _zoomed_pass(self, x: torch.Tensor, box: torch.Tensor, scale: int) -> tuple:
        """Scale ``scale`` (0-based, > 0) on the crop ``box`` of ``x``: detached CPU crop, logits and attentions."""
        crop = dppm.crop_and_resize(x, box.to(x.device), self._size)
        logits, attentions = vitlib.forward_scale(self.vit, crop, self.cls_token(scale), False, "heads")
        return crop.cpu(), logits.float().cpu(), tuple(a.float().cpu() for a in attentions)

    def _scale1_state(self, x: torch.Tensor | None, cache: Scale1State | None, device) -> Scale1State:
        if cache is not None:
            return check_input_cache(cache, Scale1State, self, x)
        if x is None:
            raise ConfigError("trace needs an input x (or cache=an earlier trace's cache)")
        self._check_input(x)
        logits, attentions = vitlib.forward_scale(self.vit, x.to(device), self.cls_token(0), False, "heads")
        return Scale1State(
            x=x.detach().cpu(),
            attentions=tuple(a.float().cpu() for a in attentions),
            logits=logits.float().cpu(),
            config=dict(self.config),
            owner=id(self),
        )

    # ------------------------------------------------------------------------------------ explanations
    def attention_gradients(
        self, x: torch.Tensor, target: int | torch.Tensor | None = None, scale: int = 0
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...], torch.Tensor]:
        """Attention probabilities and their gradients w.r.t. a class logit, for ``gradient_rollout``.

        Uses ``torch.autograd.grad`` on probabilities formed inside the graph: no hooks, no ``.grad`` written on
        any parameter, eval behaviour without a mode flip.

        Args:
            x: the input of that scale (``trace.scales[s].crop`` for ``s > 0``).
            target: class index (or one per image); None = the scale's predicted class.
            scale: 0-based scale whose CLS token is used.

        Returns:
            ``(attentions, gradients, target)``: per-layer ``(B, H, N, N)`` tensors and the ``(B,)`` classes used.
        """
        if not 0 <= scale < self.num_scales:
            raise ConfigError(f"scale must be in [0, {self.num_scales - 1}], got {scale!r}")
        self._check_input(x)
        device = self.vit.cls_token.device
        with torch.enable_grad():
            logits, attentions = vitlib.forward_scale(self.vit, x.to(device), self.cls_token(scale), False, "graph")
            if target is None:
                classes = logits.argmax(dim=1)
            else:
                classes = torch.as_tensor(target, device=device).long().expand(logits.shape[0])
            score = logits.gather(1, classes.view(-1, 1)).sum()
            gradients = torch.autograd.grad(score, attentions)
        return (
            tuple(a.detach().float().cpu() for a in attentions),
            tuple(g.float().cpu() for g in gradients),
            classes.cpu(),
        )
