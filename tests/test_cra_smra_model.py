"""The CRA-SMRA model: options, heads and loss, the live-δ trace and its cache, training, backbones, weights."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision

from fgvc_core import build_model
from fgvc_core.errors import CheckpointError, ConfigError
from fgvc_core.models.cra_smra import CraSmraTrace, build_cra_smra
from fgvc_core.models.cra_smra.backbones import build_backbone
from fgvc_core.models.cra_smra.cram import suppression_mask
from fgvc_core.models.weights import load_matching

TINY = dict(backbone="resnet_tiny", conv_channels=16, conv_mid_channels=8, head_hidden=16, reduction=4)


def tiny(variant: str = "cram_smram", num_classes: int = 5, **options) -> torch.nn.Module:
    return build_model("cra_smra", num_classes, **{**TINY, "variant": variant, **options})


def _randomise_bn(model: torch.nn.Module) -> None:
    # Non-trivial running statistics, so that eval mode differs from a fresh model's identity-like BN.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# ---------------------------------------------------------------- options
def test_config_holds_every_option_and_rebuilds_the_model():
    model = tiny(delta=0.8, omega=0.3, alpha=1.5, smram_resize="conv")
    assert model.config == {
        "num_classes": 5, **TINY, "variant": "cram_smram", "delta": 0.8, "omega": 0.3, "alpha": 1.5, "beta": 1.0,
        "gamma": 1.0, "smram_resize": "conv", "suppress_from": "stage",
    }  # fmt: skip
    rebuilt = build_model("cra_smra", **model.config)
    mine = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == mine
    assert model.head_names == ("stage3", "stage4", "stage5", "concat") and model.model_name == "cra_smra"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("delta", 0.0, "delta"),
        ("delta", 1.01, "delta"),
        ("omega", -0.1, "omega"),
        ("omega", 1.5, "omega"),
        ("omega", float("nan"), "omega"),
        ("backbone", "vgg16", "resnet_tiny"),
        ("variant", "se", "cram_smram"),
        ("reduction", 0, "reduction"),
        ("conv_channels", True, "conv_channels"),
        ("smram_resize", "nearest", "avgpool"),
        ("gamma", -1.0, "gamma"),
    ],
)
def test_invalid_options_raise_config_error(option, value, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**{option: value})


def test_unknown_options_are_named():
    with pytest.raises(ConfigError, match="deltta.*patch_size|patch_size"):
        tiny(deltta=0.5, patch_size=16)


# ---------------------------------------------------------------- forward, loss, prediction
def test_forward_heads_probs_and_l_div_by_mode():
    model = tiny()
    x = torch.randn(3, 3, 64, 64)
    out = model(x)  # training mode: SMRAM runs
    assert set(out.logits) == set(model.head_names) and all(v.shape == (3, 5) for v in out.logits.values())
    naive = sum(torch.exp(v) / torch.exp(v).sum(1, keepdim=True) for v in out.logits.values()) / 4
    torch.testing.assert_close(out.probs, naive)
    assert out.aux["l_div"].ndim == 0 and 0 <= float(out.aux["l_div"].detach()) <= 2 / 3
    model.eval()
    assert model(x).aux == {}  # SMRAM is removed at test
    assert tiny("cram")(x).aux == {}  # and absent without SMRAM


def _naive_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.logsumexp(row, 0) - row[t] for row, t in zip(logits, target)]).mean()


def test_loss_combines_heads_and_l_div_with_alpha_beta_gamma():
    model = tiny(alpha=1.5, beta=0.7, gamma=0.3)
    x, target = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 4])
    out = model(x)
    total, parts = model.loss(out, target)
    ce = {name: _naive_ce(out.logits[name], target) for name in model.head_names}
    stages = ce["stage3"] + ce["stage4"] + ce["stage5"]
    expected = 1.5 * ce["concat"] + 0.7 * stages + 0.3 * out.aux["l_div"]
    torch.testing.assert_close(total, expected)
    assert parts["total"] == pytest.approx(float(expected.detach()), rel=1e-6)
    assert parts["ce_stage4"] == pytest.approx(float(ce["stage4"].detach()), rel=1e-6)
    model.eval()
    out = model(x)
    total, parts = model.loss(out, target)
    assert "l_div" not in parts
    torch.testing.assert_close(total, 1.5 * _naive_ce(out.logits["concat"], target) + 0.7 * sum(
        _naive_ce(out.logits[f"stage{s}"], target) for s in (3, 4, 5)))  # fmt: skip


def test_predict_is_eval_mode_without_flipping_or_updating_the_model():
    model = tiny()
    _randomise_bn(model)
    x = torch.randn(2, 3, 64, 64)
    state = copy.deepcopy(model.state_dict())
    probs = model.predict(x)  # model is in training mode
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # no BN statistics update
    reference = copy.deepcopy(model).eval()
    torch.testing.assert_close(probs, reference(x).probs)
    model.eval()
    torch.testing.assert_close(model.predict(x), probs)


# ---------------------------------------------------------------- trace and live δ
@pytest.fixture
def eval_model():
    model = tiny()
    _randomise_bn(model)
    return model.eval()


def test_trace_fields_are_detached_cpu_and_consistent(eval_model):
    x = torch.randn(2, 3, 64, 64)
    tr = eval_model.trace(x, delta=0.8, omega=0.25)
    assert isinstance(tr, CraSmraTrace) and [s.stage for s in tr.stages] == [3, 4, 5]
    assert (tr.delta, tr.omega, tr.variant) == (0.8, 0.25, "cram_smram")
    channels = eval_model.backbone.spec.channels
    sizes = {3: 8, 4: 4, 5: 2}
    for st in tr.stages:
        c, size = channels[st.stage - 1], sizes[st.stage]
        assert st.stage_output.shape == (2, c, size, size) and st.importance.shape == (2, c)
        assert st.enhanced.shape == (2, 16, size, size) and st.enhanced_mean.shape == (2, size, size)
        torch.testing.assert_close(st.enhanced_mean, st.enhanced.mean(1))
        torch.testing.assert_close(st.importance_softmax, st.importance.softmax(1))
        torch.testing.assert_close(st.suppression, suppression_mask(st.importance_softmax, 0.8, 0.25))
        torch.testing.assert_close(st.suppressed_mean, (st.stage_output * st.suppression[..., None, None]).mean(1))
        torch.testing.assert_close(st.reweighted_mean, (st.stage_output * st.importance[..., None, None]).mean(1))
        torch.testing.assert_close(st.pooled, st.enhanced.amax(dim=(2, 3)))
        assert torch.equal(st.suppressed_channels, st.suppression == 0.25)
    tensors = [tr.probs, tr.smram_maps, tr.l_div, *tr.logits.values(), *tr.head_probs.values()]
    tensors += [t for st in tr.stages for t in (st.stage_output, st.importance, st.enhanced)]
    assert all(t.device.type == "cpu" and not t.requires_grad for t in tensors)
    assert tr.smram_maps.shape == (2, 3, 2, 2)
    torch.testing.assert_close(tr.l_div, tr.l_div_per_image.mean())
    torch.testing.assert_close(tr.head_probs["concat"], tr.logits["concat"].softmax(-1))
    torch.testing.assert_close(eval_model.trace(x).probs, eval_model.predict(x))
    assert tr.stage(4) is tr.stages[1]


def _bn(x: torch.Tensor, bn) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean.view(shape)) * scale.view(shape) + bn.bias.view(shape)


@torch.no_grad()
def test_conv_layer_pooling_and_heads_match_naive(eval_model):
    tr = eval_model.trace(torch.randn(2, 3, 64, 64))
    pooled = []
    for i, st in enumerate(tr.stages):
        first, second = eval_model.conv_blocks[i]
        h = st.stage_output * st.importance[:, :, None, None]  # X_e = I ⊗ X
        h = F.relu(_bn(F.conv2d(h, first.conv.weight), first.bn))  # 1×1 to conv_mid_channels
        h = F.relu(_bn(F.conv2d(h, second.conv.weight, padding=1), second.bn))  # 3×3 to C_a
        torch.testing.assert_close(st.enhanced, h, atol=1e-5, rtol=1e-5)
        pooled.append(h.flatten(2).max(dim=2).values)  # global max pooling

    def head(v, seq):
        bn1, fc1, bn2, _, fc2 = seq
        return F.linear(F.elu(_bn(F.linear(_bn(v, bn1), fc1.weight, fc1.bias), bn2)), fc2.weight, fc2.bias)

    for i, stage in enumerate((3, 4, 5)):
        torch.testing.assert_close(tr.logits[f"stage{stage}"], head(pooled[i], eval_model.stage_heads[i]))
    torch.testing.assert_close(tr.logits["concat"], head(torch.cat(pooled, 1), eval_model.concat_head))


def test_trace_of_variants_without_cram():
    x = torch.randn(2, 3, 64, 64)
    base = tiny("base").eval().trace(x, delta=0.5)
    assert base.delta is None and base.stages[0].importance is None and base.smram_maps is None
    torch.testing.assert_close(base.stages[0].suppressed_mean, base.stages[0].stage_mean)
    cbam = tiny("cbam").eval().trace(x)
    assert cbam.stages[0].importance is not None and cbam.stages[0].suppression is None and cbam.l_div is None


def test_trace_never_alters_the_model(eval_model):
    state = copy.deepcopy(eval_model.state_dict())
    attributes = {name: set(vars(m)) for name, m in eval_model.named_modules()}
    x = torch.randn(2, 3, 64, 64)
    first = eval_model.trace(x, delta=0.5, omega=0.0)
    eval_model.trace(x, delta=0.7, omega=0.1, cache=first.cache)
    assert not eval_model.training and eval_model.config["delta"] == 0.9 and eval_model.config["omega"] == 0.5
    assert all(torch.equal(state[k], v) for k, v in eval_model.state_dict().items())
    assert {name: set(vars(m)) for name, m in eval_model.named_modules()} == attributes
    assert _hooks(eval_model) == 0


def _naive_stages(model, x: torch.Tensor, delta: float, omega: float) -> list[torch.Tensor]:
    """X of stages 3, 4, 5 from the backbone and CRAM's equations written out by hand."""
    h = x
    for s in (1, 2, 3):
        h = model.backbone.run_stage(s, h)
    outputs = []
    for i, s in enumerate((3, 4, 5)):
        if s > 3:
            h = model.backbone.run_stage(s, h)
        outputs.append(h)
        mlp = model.reattention[i].mlp
        w1, b1, w2, b2 = mlp.fc1.weight[:, :, 0, 0], mlp.fc1.bias, mlp.fc2.weight[:, :, 0, 0], mlp.fc2.bias
        avg, peak = h.mean(dim=(2, 3)), h.flatten(2).max(-1).values
        importance = torch.sigmoid(
            F.linear(F.relu(F.linear(avg, w1, b1)), w2, b2) + F.linear(F.relu(F.linear(peak, w1, b1)), w2, b2)
        )
        soft = torch.exp(importance) / torch.exp(importance).sum(1, keepdim=True)
        s_mask = torch.where(soft >= delta * soft.max(1, keepdim=True).values, omega, 1.0)
        h = h * s_mask[:, :, None, None]
    return outputs


@torch.no_grad()
def test_delta_override_equals_a_full_recomputation_with_that_delta(eval_model):
    x = torch.randn(2, 3, 64, 64)
    default = eval_model.trace(x)
    live = eval_model.trace(x, delta=0.6, omega=0.2, cache=default.cache)
    other = build_model("cra_smra", **{**eval_model.config, "delta": 0.6, "omega": 0.2})
    other.load_state_dict(eval_model.state_dict())
    full = other.eval().trace(x)
    naive = _naive_stages(eval_model, x, 0.6, 0.2)
    assert not torch.equal(live.stages[0].suppression, default.stages[0].suppression)  # δ really changed S
    assert (live.stages[1].stage_output - default.stages[1].stage_output).abs().max() > 1e-3
    for i, (a, b) in enumerate(zip(live.stages, full.stages)):
        torch.testing.assert_close(a.suppression, b.suppression, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.stage_output, b.stage_output, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.stage_output, naive[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.enhanced, b.enhanced, atol=1e-5, rtol=1e-5)
    for name in eval_model.head_names:
        torch.testing.assert_close(live.logits[name], full.logits[name], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(live.probs, full.probs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(live.l_div, full.l_div, atol=1e-5, rtol=1e-5)


def test_cached_trace_skips_stages_1_to_3(eval_model):
    calls = {name: 0 for name in ("conv1", "layer1", "layer2", "layer3", "layer4")}
    handles = []
    for name in calls:  # hooks installed by the test, on the stem and stage modules

        def count(module, inputs, output, name=name):
            calls[name] += 1

        handles.append(getattr(eval_model.backbone, name).register_forward_hook(count))
    try:
        x = torch.randn(2, 3, 64, 64)
        first = eval_model.trace(x)
        assert calls == dict.fromkeys(calls, 1)
        again = eval_model.trace(x, delta=0.5, cache=first.cache)
        twice = eval_model.trace(x, delta=0.5, cache=first.cache)
        assert calls == {"conv1": 1, "layer1": 1, "layer2": 1, "layer3": 3, "layer4": 3}
    finally:
        for handle in handles:
            handle.remove()
    assert again.cache is first.cache
    torch.testing.assert_close(twice.probs, again.probs, atol=0, rtol=0)  # the cache was not modified in place
    torch.testing.assert_close(again.probs, eval_model.trace(x, delta=0.5).probs, atol=1e-6, rtol=1e-5)


def test_cached_trace_also_skips_the_stage3_conv_layer_and_matches_a_full_pass(eval_model):
    calls = {"conv3": 0, "conv4": 0}

    def counter(name):
        def count(module, inputs, output):
            calls[name] += 1

        return count

    handles = [
        eval_model.conv_blocks[0].register_forward_hook(counter("conv3")),
        eval_model.conv_blocks[1].register_forward_hook(counter("conv4")),
    ]
    try:
        x = torch.randn(2, 3, 64, 64)
        first = eval_model.trace(x)
        cached = eval_model.trace(x, delta=0.6, omega=0.2, cache=first.cache)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"conv3": 1, "conv4": 2}  # stage 3's Conv_layer ran once, stage 4's twice
    full = eval_model.trace(x, delta=0.6, omega=0.2)
    torch.testing.assert_close(cached.probs, full.probs, atol=1e-5, rtol=0)
    torch.testing.assert_close(cached.stages[0].enhanced, full.stages[0].enhanced, atol=0, rtol=0)
    torch.testing.assert_close(cached.smram_maps, full.smram_maps, atol=1e-5, rtol=0)
    # The cached Conv_layer output depends on CRAM(3) and that Conv_layer: changing them invalidates the cache.
    with torch.no_grad():
        next(eval_model.conv_blocks[0].parameters()).mul_(1.01)
    with pytest.raises(ConfigError, match="cache"):
        eval_model.trace(x, cache=first.cache)


def test_a_cache_of_another_input_model_mode_or_weights_raises(eval_model):
    x = torch.randn(1, 3, 64, 64)
    cache = eval_model.trace(x).cache
    with pytest.raises(ConfigError, match="cache"):
        eval_model.trace(x + 0.01, cache=cache)
    with pytest.raises(ConfigError, match="cache"):
        eval_model.trace(torch.cat([x, x]), cache=cache)
    twin = copy.deepcopy(eval_model)
    twin._instance_id = "another instance"  # as a second build with the same weights would have
    with pytest.raises(ConfigError, match="cache"):
        twin.trace(x, cache=cache)
    with torch.no_grad():
        eval_model.backbone.layer1[0].conv1.weight.mul_(1.01)
    with pytest.raises(ConfigError, match="cache"):
        eval_model.trace(x, cache=cache)
    with pytest.raises(ConfigError, match="delta"):
        eval_model.trace(x, delta=1.5)
    with pytest.raises(ConfigError, match="omega"):
        eval_model.trace(x, omega=-1)


# ---------------------------------------------------------------- training
@pytest.mark.parametrize("variant", ["plain", "base", "cbam", "cbam_full", "cram", "cram_smram"])
def test_one_sgd_step_reduces_the_loss_and_reaches_the_new_modules(variant):
    model = tiny(variant, num_classes=4)
    x, target = torch.randn(8, 3, 64, 64), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    loss, _ = model.loss(model(x), target)
    optimizer.zero_grad()
    loss.backward()
    if variant not in ("base", "plain"):
        assert all(float(m.mlp.fc1.weight.grad.abs().sum()) > 0 for m in model.reattention)
        assert all(float(m.mlp.fc2.weight.grad.abs().sum()) > 0 for m in model.reattention)
    if variant == "cram_smram":
        assert all(float(phi.weight.grad.abs().sum()) > 0 for phi in model.smram.phi)
    else:
        assert model.smram is None
    optimizer.step()
    after, _ = model.loss(model(x), target)
    assert float(after.detach()) < float(loss.detach())


def test_parameter_groups_cover_every_parameter_once():
    model = tiny()
    groups = model.parameter_groups()
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in model.smram.parameters()} <= {id(p) for p in groups["backbone"]}
    assert {id(p) for p in model.reattention.parameters()} <= {id(p) for p in groups["new"]}


# ---------------------------------------------------------------- backbones
@pytest.mark.parametrize("name", ["resnet_tiny", "resnet18", "resnet50"])
@torch.no_grad()
def test_backbone_stage_channels_and_strides(name):
    backbone = build_backbone(name).eval()
    h = torch.randn(1, 3, 64, 64)
    for stage in range(1, 6):
        h = backbone.run_stage(stage, h)
        stride = backbone.spec.strides[stage - 1]
        assert h.shape == (1, backbone.spec.channels[stage - 1], 64 // stride, 64 // stride)


def _run_backbone(backbone, x: torch.Tensor) -> torch.Tensor:
    h = x
    for stage in range(1, 6):
        h = backbone.run_stage(stage, h)
        stride = backbone.spec.strides[stage - 1]
        assert h.shape == (x.shape[0], backbone.spec.channels[stage - 1], 32 // stride, 32 // stride)
    return h


@torch.no_grad()
def test_stage_split_reproduces_torchvision_resnet_loaded_from_a_file(tmp_path):
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_cra_smra(3, backbone="resnet18", pretrained=path, conv_channels=8, conv_mid_channels=8, head_hidden=8)
    report = model.pretrained_report
    assert len(report.matched) == len(model.backbone.state_dict()) and not report.missing
    assert set(report.unexpected) == {"fc.weight", "fc.bias"}
    x = torch.randn(1, 3, 32, 32)
    r = reference
    expected = r.layer4(r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x))))))))
    torch.testing.assert_close(_run_backbone(model.backbone.eval(), x), expected)


@torch.no_grad()
def test_stage_split_reproduces_torchvision_densenet_and_reads_its_old_key_names():
    reference = torchvision.models.densenet161(weights=None).eval()
    backbone = build_backbone("densenet161")
    # torchvision's 2017 files spell "denselayer1.norm1.weight" as "denselayer1.norm.1.weight" (no batch counters)
    old_style = {
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v
        for k, v in reference.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert set(old_style) - set(reference.state_dict())
    report = load_matching(backbone, backbone.remap_state_dict(old_style))
    assert {name for name, _ in backbone.named_parameters()} <= set(report.matched)
    assert set(report.unexpected) == {"classifier.weight", "classifier.bias"}
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(_run_backbone(backbone.eval(), x), F.relu(reference.features(x)))


def test_full_models_over_backbones_give_four_heads():
    for name in ("resnet_tiny", "resnet18"):
        model = build_model("cra_smra", 7, **{**TINY, "backbone": name}).eval()
        out = model(torch.randn(2, 3, 64, 64))
        assert all(v.shape == (2, 7) for v in out.logits.values())


def test_pretrained_from_safetensors_and_wrong_architectures(tmp_path):
    from safetensors.torch import save_file

    source = tiny()
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    model = tiny(pretrained=path)
    assert all(
        torch.equal(a, b) for a, b in zip(model.backbone.state_dict().values(), source.backbone.state_dict().values())
    )
    assert "pretrained" not in model.config
    whole = tmp_path / "whole.pth"  # a whole CRA-SMRA state dict: its backbone part is used
    torch.save(source.state_dict(), whole)
    assert torch.equal(tiny(pretrained=whole).backbone.conv1.weight, source.backbone.conv1.weight)
    other = tmp_path / "squeezenet.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), other)
    with pytest.raises(CheckpointError):
        tiny(pretrained=other)
    wide = tmp_path / "resnet18.pth"  # same key names as resnet_tiny, other shapes
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wide)
    with pytest.raises(CheckpointError, match="resnet_tiny"):
        tiny(pretrained=wide)


# ---------------------------------------------------------------- Table 3 rows: plain and full CBAM
def test_plain_variant_is_the_bare_backbone_with_one_linear_head():
    model = tiny("plain").eval()
    assert model.head_names == ("plain",) and len(model.conv_blocks) == 0 and len(model.stage_heads) == 0
    x = torch.randn(2, 3, 64, 64)
    h = x
    with torch.no_grad():
        for stage in range(1, 6):  # naive: the backbone's five stages, average pool, one Linear
            h = model.backbone.run_stage(stage, h)
        expected = F.linear(h.mean((2, 3)), model.concat_head.weight, model.concat_head.bias)
    out = model(x)
    torch.testing.assert_close(out.logits["plain"], expected)
    torch.testing.assert_close(model.predict(x), expected.softmax(-1))
    loss, parts = model.train().loss(model(x), torch.tensor([0, 1]))
    torch.testing.assert_close(loss, F.cross_entropy(model(x).logits["plain"], torch.tensor([0, 1])), atol=1e-3, rtol=0)
    assert set(parts) == {"ce_plain", "total"}
    assert model.eval().trace(x).stages[2].importance is None  # the pages still see the three stage maps


def test_cbam_full_gates_channels_then_positions_like_cbam():
    model = tiny("cbam_full").eval()
    gate = model.reattention[0]
    x = torch.randn(2, gate.mlp.fc1.in_channels, 8, 8)
    with torch.no_grad():
        mlp = gate.mlp
        importance = torch.sigmoid(
            mlp.fc2(F.relu(mlp.fc1(x.mean((2, 3), keepdim=True))))
            + mlp.fc2(F.relu(mlp.fc1(x.amax((2, 3), keepdim=True))))
        )
        xc = x * importance
        pooled = torch.cat([xc.mean(1, keepdim=True), xc.amax(1, keepdim=True)], dim=1)
        conv = gate.spatial.conv  # timm ConvNormAct: 7x7 conv (no bias) then BN, no activation
        spatial = torch.sigmoid(conv.bn(F.conv2d(pooled, conv.conv.weight, padding=3)))
        expected = xc * spatial
        out = gate(x, delta=0.5, omega=0.1)
    torch.testing.assert_close(out.enhanced, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.suppressed, expected)
    torch.testing.assert_close(out.importance, importance.flatten(1))


@pytest.mark.parametrize("suppress_from", ["stage", "enhanced"])
def test_suppress_from_picks_what_s_multiplies(suppress_from):
    model = tiny("cram", suppress_from=suppress_from).eval()
    cram = model.reattention[1]
    x = torch.rand(2, cram.mlp.fc1.in_channels, 4, 4)
    with torch.no_grad():
        out = cram(x, delta=0.9, omega=0.5)
    source = x if suppress_from == "stage" else x * out.importance[:, :, None, None]
    torch.testing.assert_close(out.suppressed, source * out.suppression[:, :, None, None])
    with pytest.raises(ConfigError, match="suppress_from"):
        tiny("cram", suppress_from="input")
