"""Optimiser groups: per-group learning rates, and no weight decay on biases, norms and tokens."""

from __future__ import annotations

import pytest
import torch

import fgvc_core
from fgvc_core.engine.optim import build_optimizer
from fgvc_core.errors import ConfigError


def _cfg(**kw):
    return {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.05, "nesterov": False, "optimizer": "sgd", **kw}


def test_cra_smra_groups_get_their_lrs_and_decay_only_on_weights():
    model = fgvc_core.build_model("cra_smra", 3, backbone="resnet_tiny", conv_channels=16, conv_mid_channels=8,
                                  head_hidden=16)  # fmt: skip
    opt = build_optimizer(model, _cfg(lr={"backbone": 0.001, "new": 0.02}))
    names = {id(p): n for n, p in model.named_parameters()}
    seen = set()
    for group in opt.param_groups:
        for p in group["params"]:
            seen.add(id(p))
            name = names[id(p)]
            expect_lr = 0.001 if name.startswith(("backbone.", "smram.")) else 0.02
            assert group["lr"] == expect_lr, name
            assert group["weight_decay"] == (0.0 if p.ndim <= 1 else 0.05), name
    assert seen == {id(p) for p in model.parameters()}


def test_vit_tokens_and_pos_embed_are_not_decayed():
    model = fgvc_core.build_model("rams_trans", 3, backbone="vit_tiny_patch16_224", img_size=32, patch_size=8,
                                  vit_kwargs={"depth": 1, "embed_dim": 16, "num_heads": 2})  # fmt: skip
    opt = build_optimizer(model, _cfg(optimizer="adamw", lr=0.001))
    assert isinstance(opt, torch.optim.AdamW)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    for name in ("vit.pos_embed", "vit.cls_token", "extra_cls_tokens.0", "vit.blocks.0.norm1.weight"):
        assert decay_of[id(named[name])] == 0.0, name
    assert decay_of[id(named["vit.blocks.0.attn.qkv.weight"])] == 0.05


def test_lr_mapping_must_cover_every_group():
    model = fgvc_core.build_model("cra_smra", 3, backbone="resnet_tiny", conv_channels=16, conv_mid_channels=8,
                                  head_hidden=16)  # fmt: skip
    with pytest.raises(ConfigError, match="no learning rate for group"):
        build_optimizer(model, _cfg(lr={"backbone": 0.01}))
    with pytest.raises(ConfigError, match="unknown parameter group"):
        build_optimizer(model, _cfg(lr={"backbone": 0.01, "new": 0.1, "heads": 1.0}))
