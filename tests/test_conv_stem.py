"""The optional convolutional patch embedding keeps timm's token grid, and is a named, rebuildable option."""

from __future__ import annotations

import pytest
import torch

import fgvc_core
from fgvc_core.errors import ConfigError
from fgvc_core.models.rams_trans.conv_stem import ConvStemPatchEmbed

TINY = dict(backbone="vit_tiny_patch16_224", img_size=32, patch_size=8, drop_rate=0.0,
            vit_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2})  # fmt: skip


def test_conv_stem_keeps_the_grid_and_tokens():
    linear = fgvc_core.build_model("rams_trans", 3, **TINY).eval()
    conv = fgvc_core.build_model("rams_trans", 3, patch_embed="conv_stem", **TINY).eval()
    assert isinstance(conv.vit.patch_embed, ConvStemPatchEmbed)
    x = torch.randn(2, 3, 32, 32)
    tokens, size = conv.vit.patch_embed.proj(x), conv.vit.patch_embed.grid_size
    assert tokens.shape == (2, 32, 4, 4) and tuple(size) == (4, 4)  # 3 stride-2 convs for patch 8, then 1x1
    strides = [m.stride[0] for m in conv.vit.patch_embed.proj if isinstance(m, torch.nn.Conv2d)]
    assert strides == [2, 2, 2, 1]
    a, b = linear.trace(x), conv.trace(x)
    assert a.scales[0].rollout.shape == b.scales[0].rollout.shape == (2, 4, 4)
    # Everything past the embedding is the same architecture.
    shared = {k: v.shape for k, v in linear.state_dict().items() if not k.startswith("vit.patch_embed")}
    assert shared == {k: v.shape for k, v in conv.state_dict().items() if not k.startswith("vit.patch_embed")}


def test_stem_does_not_depend_on_the_mode():
    conv = fgvc_core.build_model("rams_trans", 3, patch_embed="conv_stem", **TINY)
    x = torch.randn(2, 3, 32, 32)
    conv.train()
    with torch.no_grad():
        train_tokens = conv.vit.patch_embed(x)
    conv.eval()
    with torch.no_grad():
        assert torch.equal(train_tokens, conv.vit.patch_embed(x))  # GroupNorm, no BatchNorm statistics


def test_option_round_trips_and_is_validated():
    conv = fgvc_core.build_model("rams_trans", 3, patch_embed="conv_stem", **TINY)
    rebuilt = fgvc_core.build_model("rams_trans", 3, **{k: v for k, v in conv.config.items() if k != "num_classes"})
    assert isinstance(rebuilt.vit.patch_embed, ConvStemPatchEmbed)
    with pytest.raises(ConfigError, match="patch_embed"):
        fgvc_core.build_model("rams_trans", 3, patch_embed="hybrid", **TINY)
    with pytest.raises(ConfigError, match="power-of-two"):
        fgvc_core.build_model("rams_trans", 3, patch_embed="conv_stem", **{**TINY, "patch_size": 6, "img_size": 36})
