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


# ------------------------------------------------------------------ hybrid embedding (resnet_tiny layers 1-3)
HYBRID = dict(backbone="vit_tiny_patch16_224", img_size=64, drop_rate=0.0, patch_embed="resnet_tiny",
              vit_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2})  # fmt: skip


def _cra_checkpoint(tmp_path):
    """A trained-looking CRA-SMRA demo backbone (random weights, non-trivial BN statistics) saved as safetensors."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    cra = fgvc_core.build_model("cra_smra", 3, backbone="resnet_tiny", conv_channels=16, conv_mid_channels=8,
                                head_hidden=8)  # fmt: skip
    with torch.no_grad():
        for name, buf in cra.backbone.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    path = tmp_path / "cra.safetensors"
    save_file({k: v.contiguous() for k, v in cra.state_dict().items()}, str(path))
    return cra.eval(), path


def test_hybrid_tokens_are_the_cra_backbone_features_it_was_loaded_from(tmp_path):
    cra, path = _cra_checkpoint(tmp_path)
    model = fgvc_core.build_model("rams_trans", 3, pretrained=str(path), **HYBRID)
    x = torch.randn(2, 3, 64, 64)
    # Naive re-computation: the CNN's own stem and layers 1-3 in eval mode (running BN statistics).
    net = cra.backbone
    with torch.no_grad():
        expected = x
        for name in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3"):
            expected = getattr(net, name)(expected)
        model.train()  # frozen BN: the tokens must not depend on the mode either
        got = model.vit.patch_embed.proj.backbone(x)
    assert got.shape == (2, 128, 4, 4) and tuple(model.vit.patch_embed.grid_size) == (4, 4)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    groups = model.parameter_groups()
    assert set(groups) == {"cnn", "vit"}
    assert {id(p) for p in groups["cnn"]} == {id(p) for p in model.vit.patch_embed.proj.backbone.parameters()}
    assert len(groups["cnn"]) + len(groups["vit"]) == len(list(model.parameters()))
    # the plain model keeps one group, so float learning rates of the paper recipes are unchanged
    assert set(fgvc_core.build_model("rams_trans", 3, **TINY).parameter_groups()) == {"vit"}


def test_hybrid_weights_are_validated(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(ConfigError, match="16x16"):
        fgvc_core.build_model("rams_trans", 3, **{**HYBRID, "patch_size": 8})
    partial = tmp_path / "partial.safetensors"
    save_file({"backbone.conv1.weight": torch.zeros(64, 3, 7, 7)}, str(partial))
    with pytest.raises(fgvc_core.CheckpointError, match="lacks"):
        fgvc_core.build_model("rams_trans", 3, pretrained=str(partial), **HYBRID)
    unrelated = tmp_path / "unrelated.safetensors"
    save_file({"head.weight": torch.zeros(3, 8)}, str(unrelated))
    with pytest.raises(fgvc_core.CheckpointError, match="no resnet_tiny"):
        fgvc_core.build_model("rams_trans", 3, pretrained=str(unrelated), **HYBRID)
