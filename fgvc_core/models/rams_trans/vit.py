"""The timm ViT that RAMS-Trans shares across scales, and our own pass over its pieces.

Why our own pass instead of ``vit(x)``:
- every scale substitutes its own CLS token, everything else is timm's modules (the same Parameter objects);
- the DPPM needs every block's softmax attention. timm's fused SDPA never forms it, and reading it the usual way
  (``fused_attn=False`` plus hooks on ``attn_drop``) slows the gradient path and leaves state on a shared model.
  Here each block calls ``attn.qkv`` once, feeds q, k, v to ``F.scaled_dot_product_attention`` for the output (the
  gradient path stays fused) and, only when asked, forms ``softmax(q kᵀ · scale)`` from *detached* q, k under
  ``no_grad`` (an extra ``B·H·N²·d`` matmul, no autograd graph);
- dropout is applied functionally with an explicit ``training`` flag, so ``predict``/``trace`` run in eval
  behaviour without flipping ``.train()/.eval()`` on a model other sessions share.

The pass supports timm's standard ``Block`` / ``Attention`` / ``Mlp`` (q/k norm, scale norm, gated attention,
layer scale, drop path, ``no_embed_class``, ``pre_norm``); :func:`check_vit` rejects anything else at build time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp
from timm.layers.attention import Attention
from timm.layers.drop import DropPath, drop_path
from timm.models.vision_transformer import Block, VisionTransformer

from fgvc_core.errors import CheckpointError, ConfigError
from fgvc_core.models.weights import MIN_PRETRAINED_FRACTION, LoadReport, load_matching, read_state_dict
from fgvc_core.ops.rollout import fuse_heads

# What a pass returns besides the tokens:
#   None           no attention (plain fused pass; training's last scale)
#   "heads"        every block's (B, H, N, N) probabilities, detached (trace)
#   "mean"/...     head-fused (B, 1, N, N), detached: what the DPPM needs in training, H times less memory
#   "graph"        (B, H, N, N) probabilities inside the autograd graph (explicit softmax; gradient rollout only)
AttentionMode = Literal[None, "heads", "mean", "max", "min", "graph"]

# timm kwargs this module controls itself; vit_kwargs may not override them.
RESERVED_KWARGS = frozenset(
    {
        "num_classes", "img_size", "patch_size", "pretrained", "class_token", "global_pool", "reg_tokens",
        "dynamic_img_size", "dynamic_img_pad", "proj_drop_rate", "pos_drop_rate", "patch_drop_rate", "embed_layer",
    }
)  # fmt: skip


def check_vit_build(num_classes: Any, backbone: Any, drop_rate: Any, vit_kwargs: Any) -> dict:
    """The build options every model on a timm ViT checks alike; returns ``vit_kwargs`` as a new dict.

    Raises:
        ConfigError: ``num_classes`` not an integer >= 2, an empty backbone name, ``drop_rate`` outside [0, 1), or
            ``vit_kwargs`` not a mapping.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not isinstance(backbone, str) or not backbone:
        raise ConfigError(f"backbone must be a timm model name, got {backbone!r}")
    if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)) or not 0 <= drop_rate < 1:
        raise ConfigError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
    if vit_kwargs is not None and not isinstance(vit_kwargs, Mapping):
        raise ConfigError(f"vit_kwargs must be a dict of timm.create_model arguments, got {vit_kwargs!r}")
    return dict(vit_kwargs or {})


def create_vit(
    backbone: str,
    num_classes: int,
    img_size: tuple[int, int],
    patch_size: tuple[int, int] | None,
    drop_rate: float,
    vit_kwargs: dict,
    patch_embed: str = "linear",
) -> VisionTransformer:
    """A randomly initialised timm ViT sized for ``img_size`` (timm sizes the position embedding to the grid).

    ``drop_rate`` is the official code's single ``dropout_rate`` (0.1): it applies after the position embedding and
    inside every MLP; timm spreads that over ``pos_drop_rate`` and ``proj_drop_rate`` (the latter also drops after
    the attention projection, which the official code does not: a small, documented difference).
    """
    import timm

    bad = sorted(RESERVED_KWARGS & set(vit_kwargs))
    if bad:
        raise ConfigError(f"vit_kwargs may not set {', '.join(bad)}: use the model's own options")
    kwargs = dict(vit_kwargs, img_size=img_size, proj_drop_rate=drop_rate, pos_drop_rate=drop_rate)
    from fgvc_core.models.rams_trans.conv_stem import PATCH_EMBEDS

    if patch_embed not in PATCH_EMBEDS:
        raise ConfigError(f"patch_embed must be one of {sorted(PATCH_EMBEDS)}, got {patch_embed!r}")
    if PATCH_EMBEDS[patch_embed] is not None:
        kwargs["embed_layer"] = PATCH_EMBEDS[patch_embed]
    if patch_size is not None:
        kwargs["patch_size"] = patch_size
    try:
        vit = timm.create_model(backbone, pretrained=False, num_classes=num_classes, **kwargs)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ConfigError(f"cannot build backbone {backbone!r}: {exc}".splitlines()[0]) from None
    except (TypeError, AssertionError, ValueError) as exc:
        raise ConfigError(f"backbone {backbone!r} rejected its options: {exc}".splitlines()[0]) from None
    check_vit(vit, backbone)
    return vit


def check_vit(vit: nn.Module, backbone: str = "backbone") -> None:
    """Raise ConfigError unless ``vit`` is a plain timm ViT this module can run block by block."""
    if not isinstance(vit, VisionTransformer):
        raise ConfigError(f"{backbone} is a {type(vit).__name__}, not a timm VisionTransformer")
    if vit.cls_token is None or vit.reg_token is not None or vit.num_prefix_tokens != 1:
        raise ConfigError(f"{backbone} must have exactly one CLS token and no register tokens")
    if vit.global_pool != "token" or vit.attn_pool is not None:
        raise ConfigError(f"{backbone} must classify from the CLS token (global_pool='token')")
    if vit.dynamic_img_size or not isinstance(vit.patch_drop, nn.Identity):
        raise ConfigError(f"{backbone}: dynamic image size and patch dropout would break the patch grid")
    for i, blk in enumerate(vit.blocks):
        ok = type(blk) is Block and type(blk.attn) is Attention and type(blk.mlp) is Mlp
        if not ok:
            raise ConfigError(f"{backbone}: block {i} is not timm's standard Block/Attention/Mlp")


def _drop(module: nn.Module, x: torch.Tensor, training: bool) -> torch.Tensor:
    """Apply a dropout-like module with an explicit mode (never the module's own ``.training``)."""
    if isinstance(module, nn.Dropout):
        return F.dropout(x, module.p, training=training)
    if isinstance(module, DropPath):
        return drop_path(x, module.drop_prob, training, module.scale_by_keep)
    return module(x)  # nn.Identity


def embed(vit: VisionTransformer, x: torch.Tensor, cls_token: torch.Tensor, training: bool) -> torch.Tensor:
    """timm's ``patch_embed`` + ``_pos_embed`` + ``norm_pre`` with ``cls_token`` in place of ``vit.cls_token``."""
    tokens = vit.patch_embed(x)
    cls = cls_token.expand(tokens.shape[0], -1, -1)
    if vit.pos_embed is None:
        tokens = torch.cat([cls, tokens], dim=1)
    elif vit.no_embed_class:  # deit-3 style: the CLS token has no position
        tokens = torch.cat([cls, tokens + vit.pos_embed], dim=1)
    else:
        tokens = torch.cat([cls, tokens], dim=1) + vit.pos_embed
    tokens = _drop(vit.pos_drop, tokens, training)
    return vit.norm_pre(tokens)


def _attention(
    attn: Attention, x: torch.Tensor, training: bool, mode: AttentionMode
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """timm ``Attention.forward`` (fused branch) that can also return the probabilities."""
    b, n, _ = x.shape
    gate = attn.gate(x).sigmoid() if attn.gate is not None else None
    q, k, v = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    probs = None
    if mode == "graph":
        # Explicit softmax so that gradients w.r.t. the probabilities exist; explanation only, never training.
        probs = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        out = F.dropout(probs, attn.attn_drop.p, training=training) @ v
    else:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if training else 0.0)
        if mode is not None:
            with torch.no_grad():
                probs = ((q.detach() * attn.scale) @ k.detach().transpose(-2, -1)).softmax(dim=-1)
                if mode != "heads":
                    probs = fuse_heads(probs, mode).unsqueeze(1)
    out = attn.norm(out.transpose(1, 2).reshape(b, n, attn.attn_dim))
    if gate is not None:
        out = out * gate
    return _drop(attn.proj_drop, attn.proj(out), training), probs


def _mlp(mlp: Mlp, x: torch.Tensor, training: bool) -> torch.Tensor:
    x = _drop(mlp.drop1, mlp.act(mlp.fc1(x)), training)
    return _drop(mlp.drop2, mlp.fc2(mlp.norm(x)), training)


def blocks(
    vit: VisionTransformer, tokens: torch.Tensor, training: bool, mode: AttentionMode = None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run every block (timm ``Block.forward`` semantics); returns the tokens and per-layer attention."""
    attentions = []
    for blk in vit.blocks:
        out, probs = _attention(blk.attn, blk.norm1(tokens), training, mode)
        tokens = tokens + _drop(blk.drop_path1, blk.ls1(out), training)
        tokens = tokens + _drop(blk.drop_path2, blk.ls2(_mlp(blk.mlp, blk.norm2(tokens), training)), training)
        if probs is not None:
            attentions.append(probs)
    return tokens, attentions


def head(vit: VisionTransformer, features: torch.Tensor, training: bool) -> torch.Tensor:
    """timm ``forward_head`` (token pooling) with an explicit dropout mode."""
    pooled = vit.fc_norm(vit.pool(features))
    return vit.head(_drop(vit.head_drop, pooled, training))


def forward_scale(
    vit: VisionTransformer,
    x: torch.Tensor,
    cls_token: torch.Tensor,
    training: bool,
    mode: AttentionMode = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One scale: image ``(B, C, H, W)`` -> logits ``(B, K)`` and the attention ``mode`` asks for."""
    tokens, attentions = blocks(vit, embed(vit, x, cls_token, training), training, mode)
    return head(vit, vit.norm(tokens), training), attentions


def grid_geometry(vit: VisionTransformer) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``(grid_hw, patch_hw, img_hw)`` of the patch embedding, as ints."""
    pe = vit.patch_embed
    return tuple(map(int, pe.grid_size)), tuple(map(int, pe.patch_size)), tuple(map(int, pe.img_size))


def load_vit_weights(
    vit: VisionTransformer, path: str | Path, min_fraction: float = MIN_PRETRAINED_FRACTION
) -> LoadReport:
    """Load a local weights file into ``vit`` through timm's own converters.

    - ``.npz``: Google's original JAX checkpoints, through ``VisionTransformer.load_pretrained`` (timm's
      ``_load_weights``: kernel transposes, q/k/v concatenation, position-embedding and patch resampling). It loads
      every tensor or fails; the classifier only when the file's class count equals ours.
    - anything else (``.safetensors``, ``.pth``, ``.bin``): read without unpickling (``read_state_dict``), passed
      through timm's ``checkpoint_filter_fn`` (resamples ``pos_embed`` to our grid and the patch kernel to our patch
      size), then every tensor whose name and shape fit is copied (a 1000-class head is reported, not loaded).
      A RAMS-Trans state dict (``vit.``-prefixed keys) is accepted too.
    - for the hybrid embedding (``patch_embed="resnet_tiny"``), a CRA-SMRA checkpoint or a resnet_tiny state dict
      initialises the embedding's ResNet layers (every one of them must be found); the transformer stays random.

    Raises:
        CheckpointError: missing/unreadable file, or it fills fewer than ``min_fraction`` of this ViT's tensors.
    """
    from timm.models.vision_transformer import checkpoint_filter_fn

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.suffix.lower() == ".npz":
        return _load_npz(vit, path)
    state = read_state_dict(path)
    if hasattr(vit.patch_embed, "load_backbone_state") and not any(key.startswith("vit.") for key in state):
        # a hybrid ViT starting from a CNN's layers (a CRA-SMRA checkpoint or a resnet_tiny state dict)
        return vit.patch_embed.load_backbone_state(state, path.name)
    if all(key.startswith("vit.") for key in state if not key.startswith("extra_cls_tokens.")):
        state = {key[len("vit.") :]: value for key, value in state.items() if key.startswith("vit.")}
    try:
        state = checkpoint_filter_fn(state, vit)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path.name} does not fit {type(vit).__name__}: {exc}".splitlines()[0]) from None
    return load_matching(vit, state, source=path.name, min_fraction=min_fraction)


def _load_npz(vit: VisionTransformer, path: Path) -> LoadReport:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            head_bias = [key for key in npz.files if key.endswith("head/bias")]
            head_fits = bool(head_bias) and npz[head_bias[0]].shape[-1] == vit.head.bias.shape[0]
        vit.load_pretrained(str(path))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path.name} is not a ViT .npz this backbone can load: {exc}".splitlines()[0]) from None
    own = list(vit.state_dict())
    head_keys = [key for key in own if key.startswith("head.")]
    loaded = [key for key in own if head_fits or key not in head_keys]
    return LoadReport(matched=loaded, missing=[] if head_fits else head_keys)
