"""RAMS-Trans on tiny ViTs: the block loop against timm, weight sharing, loss, training, trace and explanations."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fgvc_core
from fgvc_core.errors import ConfigError
from fgvc_core.models.rams_trans import dppm
from fgvc_core.models.rams_trans import vit as vitlib
from fgvc_core.ops.rollout import attention_rollout

TINY = {"depth": 2, "embed_dim": 24, "num_heads": 2}


def tiny(num_classes=4, sharpen=True, **options):
    """A 2-block ViT on 32x32 inputs with 8 px patches (4x4 grid); ``sharpen`` makes attention peaked so that
    the DPPM picks real sub-boxes instead of falling back to the whole image."""
    options = {"backbone": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8, "drop_rate": 0.0, **options}
    options["vit_kwargs"] = {**TINY, **options.get("vit_kwargs", {})}
    model = fgvc_core.build_model("rams_trans", num_classes, **options)
    if sharpen:
        with torch.no_grad():
            for blk in model.vit.blocks:
                blk.attn.qkv.weight.mul_(6.0)
    return model


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


# ------------------------------------------------------------------------------------- block loop vs timm
@pytest.mark.parametrize("extra", [{}, {"qk_norm": True, "init_values": 0.5}])
def test_block_loop_matches_timm_forward_features(extra):
    model = tiny(vit_kwargs=extra)
    with torch.no_grad():
        model.extra_cls_tokens[0].normal_()
    x = torch.randn(2, 3, 32, 32)
    reference = copy.deepcopy(model.vit).eval()  # a test-owned timm model
    for scale in (0, 1):
        reference.cls_token.data.copy_(model.cls_token(scale))
        expected = reference.forward_features(x)
        with torch.no_grad():
            tokens, _ = vitlib.blocks(model.vit, vitlib.embed(model.vit, x, model.cls_token(scale), False), False)
            logits, _ = vitlib.forward_scale(model.vit, x, model.cls_token(scale), False)
        torch.testing.assert_close(model.vit.norm(tokens), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(logits, reference.forward_head(expected), atol=1e-5, rtol=0)


def test_attention_probabilities_match_timm_unfused_path():
    model = tiny(vit_kwargs={"qk_norm": True})
    x = torch.randn(2, 3, 32, 32)
    reference = copy.deepcopy(model.vit).eval()
    seen = []
    for blk in reference.blocks:
        blk.attn.fused_attn = False  # timm's explicit softmax path; attn_drop's input is the probability map
        blk.attn.attn_drop.register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    reference(x)
    _, heads = vitlib.forward_scale(model.vit, x, model.cls_token(0), False, "heads")
    _, fused = vitlib.forward_scale(model.vit, x, model.cls_token(0), False, "max")
    assert len(heads) == 2 and heads[0].shape == (2, 2, 17, 17) and not heads[0].requires_grad
    for mine, theirs, f in zip(heads, seen, fused):
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=0)
        torch.testing.assert_close(f[:, 0], theirs.max(dim=1).values, atol=1e-6, rtol=0)
        torch.testing.assert_close(mine.sum(-1), torch.ones(2, 2, 17), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------- shared weights
def test_scales_share_every_weight_but_their_cls_tokens():
    model = tiny(num_scales=3, threshold=[1.2, 1.3])
    names = dict(model.named_parameters())
    assert set(names) == {f"vit.{n}" for n, _ in model.vit.named_parameters()} | {
        "extra_cls_tokens.0",
        "extra_cls_tokens.1",
    }
    tokens = [model.cls_token(s) for s in range(3)]
    assert tokens[0] is model.vit.cls_token and tokens[1] is names["extra_cls_tokens.0"]
    assert len({id(t) for t in tokens}) == 3
    # Gradients of a shared weight add up over scales: (1, 1) == (1, 0) + (0, 1), on the same Parameter.
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    two = tiny()
    weight = two.vit.blocks[0].attn.qkv.weight

    def grad_for(weights):
        two.zero_grad(set_to_none=True)
        two.config["scale_loss_weights"] = list(weights)
        loss, _ = two.loss(two(x), y)
        loss.backward()
        return weight.grad.clone()

    torch.testing.assert_close(grad_for((1, 1)), grad_for((1, 0)) + grad_for((0, 1)), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("weights, reaches", [((1, 1), True), ((1, 0), False)])
def test_gradient_reaches_scale2_cls_token_only_when_weighted(weights, reaches):
    model = tiny(scale_loss_weights=weights)
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    out = model(x)
    loss, parts = model.loss(out, y)
    expected = sum(w * F.cross_entropy(out.logits[n], y) for w, n in zip(weights, model.head_names))
    torch.testing.assert_close(loss, expected)
    assert set(parts) == {"loss", "ce_scale1", "ce_scale2"}
    loss.backward()
    grad = model.extra_cls_tokens[0].grad
    assert (grad is not None and grad.abs().sum() > 0) == reaches
    assert model.vit.cls_token.grad.abs().sum() > 0


def test_one_sgd_step_reduces_the_loss_on_a_fixed_batch():
    model = tiny(num_classes=3)
    model.train()
    x, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before, _ = model.loss(model(x), y)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after, _ = model.loss(model(x), y)
    assert after.item() < before.item()


# ------------------------------------------------------------------------------------------ shapes & I/O
def test_three_scales_shapes_and_per_scale_thresholds():
    model = tiny(num_classes=5, num_scales=3, threshold=[1.2, 1.3], scale_loss_weights=[1, 1, 0.5])
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert model.head_names == ("scale1", "scale2", "scale3")
    assert all(v.shape == (2, 5) for v in out.logits.values()) and out.aux["boxes"].shape == (2, 3, 4)
    trace = model.trace(x)
    assert len(trace.scales) == 3 and trace.options["threshold"] == [1.2, 1.3]
    assert trace.scales[2].crop.shape == (2, 3, 32, 32) and trace.scales[2].rollout.shape == (2, 4, 4)
    # Scale 3's box lies inside scale 2's box (composed zoom), both in input pixels.
    b2, b3 = trace.scales[1].box, trace.scales[2].box
    assert (b3[:, :2] >= b2[:, :2] - 1e-4).all() and (b3[:, 2:] <= b2[:, 2:] + 1e-4).all()


def test_patch32_on_a_non_square_input():
    model = fgvc_core.build_model(
        "rams_trans", 3, backbone="vit_tiny_patch16_224", img_size=[64, 96], patch_size=32, drop_rate=0.0,
        vit_kwargs=TINY,
    )  # fmt: skip
    x = torch.randn(2, 3, 64, 96)
    out = model(x)
    assert out.logits["scale2"].shape == (2, 3) and model.vit.pos_embed.shape == (1, 1 + 2 * 3, 24)
    trace = model.trace(x)
    assert trace.scales[0].rollout.shape == (2, 2, 3) and trace.scales[0].attentions[0].shape == (2, 2, 7, 7)
    box = trace.scales[1].box
    assert ((box[:, [0, 2]] % 32 == 0) & (box[:, [1, 3]] % 32 == 0)).all()
    assert (box[:, 2] <= 96).all() and (box[:, 3] <= 64).all()


def test_config_rebuilds_the_same_model_through_json():
    model = tiny(num_scales=3, threshold=[1.1, 1.4], head_fusion="max", rollout_query="mean", start_layer=1)
    config = json.loads(json.dumps(model.config))
    again = fgvc_core.build_model("rams_trans", **config)
    again.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(again.predict(x), model.predict(x), atol=0, rtol=0)
    assert again.options == model.options


@pytest.mark.parametrize(
    "options, match",
    [
        ({"scale_loss_weights": [1, 1, 1]}, "scale_loss_weights"),
        ({"threshold": [1.2, 1.3]}, "threshold"),
        ({"threshold": -1}, "threshold"),
        ({"head_fusion": "sum"}, "head_fusion"),
        ({"rollout_query": "patch"}, "rollout_query"),
        ({"start_layer": 2}, "start_layer"),
        ({"img_size": 36}, "multiple of the patch"),
        ({"vit_kwargs": {**TINY, "global_pool": "avg"}}, "vit_kwargs"),
        ({"backbone": "resnet18"}, "rejected its options"),
        ({"backbone": "deit_tiny_distilled_patch16_224"}, "one CLS token"),
        ({"backbone": "no_such_vit"}, "cannot build backbone"),
        ({"num_scales": 0}, "num_scales"),
        ({"colour": "red"}, "unknown"),
    ],
)
def test_bad_options_raise_config_error(options, match):
    with pytest.raises(ConfigError, match=match):
        tiny(sharpen=False, **options)


# ---------------------------------------------------------------------------------------- predict & trace
def test_predict_is_eval_behaviour_without_a_mode_flip():
    model = tiny(drop_rate=0.3)
    model.train()
    x = torch.randn(2, 3, 32, 32)
    first, second = model.predict(x), model.predict(x)
    assert model.training
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    reference = copy.deepcopy(model).eval()
    out = reference(x)
    torch.testing.assert_close(first, out.probs, atol=1e-6, rtol=0)
    softmaxes = torch.stack([F.softmax(v, dim=-1) for v in out.logits.values()])
    torch.testing.assert_close(out.probs, softmaxes.mean(0))


def test_trace_matches_forward_and_recomputes_dppm_by_hand():
    model = tiny().eval()
    x = torch.randn(3, 3, 32, 32)
    out = model(x)
    trace = model.trace(x)
    s1, s2 = trace.scales
    # Forward keeps head-fused maps only; the trace keeps every head: both give the same boxes and logits.
    torch.testing.assert_close(s2.box, out.aux["boxes"][:, 1], atol=0, rtol=0)
    torch.testing.assert_close(s1.logits, out.logits["scale1"], atol=1e-5, rtol=0)
    torch.testing.assert_close(s2.logits, out.logits["scale2"], atol=1e-5, rtol=0)
    torch.testing.assert_close(trace.probs, out.probs, atol=1e-6, rtol=0)
    assert (s2.box != torch.tensor([0.0, 0.0, 32.0, 32.0])).any(), "test needs at least one real zoom"
    # Rollout -> mask -> box, recomputed from the traced attention by the public pieces.
    scores = attention_rollout(s1.attentions).view(3, 4, 4)
    torch.testing.assert_close(s1.rollout, scores)
    assert torch.equal(s1.mask, scores > 1.2 * scores.mean(dim=(1, 2), keepdim=True))
    torch.testing.assert_close(s2.box, dppm.grid_box_to_pixels(dppm.component_box(s1.component), (8, 8)))
    torch.testing.assert_close(s2.crop, dppm.crop_and_resize(x, s2.box, (32, 32)), atol=1e-6, rtol=0)
    assert s1.crop.device.type == "cpu" and not s2.crop.requires_grad and s1.box_original is None


def test_trace_reuse_skips_the_scale1_pass_and_never_touches_the_model():
    model = tiny(num_scales=3)
    model.train()  # the trace must run eval behaviour anyway, and leave the flag as it was
    x = torch.randn(2, 3, 32, 32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = _hooks(model)
    calls = []
    handle = model.vit.patch_embed.register_forward_hook(lambda *args: calls.append(1))  # the TEST's counter
    first = model.trace(x)
    assert len(calls) == 3
    calls.clear()
    again = model.trace(None, threshold=0.8, head_fusion="max", rollout_query="mean", cache=first.cache)
    assert len(calls) == 2  # scales 2 and 3 only
    handle.remove()
    fresh = model.trace(x, threshold=0.8, head_fusion="max", rollout_query="mean")
    for a, b in zip(again.scales, fresh.scales):
        torch.testing.assert_close(a.box, b.box, atol=0, rtol=0)
        torch.testing.assert_close(a.rollout, b.rollout, atol=1e-6, rtol=0)
        torch.testing.assert_close(a.probs, b.probs, atol=1e-6, rtol=0)
    assert again.options["head_fusion"] == "max" and again.options["threshold"] == [0.8, 0.8]
    # the state keeps each fusion's maps once; the scale-1 rollout read from them equals one from every head
    assert first.cache.fused_attention("max") is first.cache.fused_attention("max")
    direct = attention_rollout(first.cache.attentions, "max", query="mean").view_as(again.scales[0].rollout)
    torch.testing.assert_close(again.scales[0].rollout, direct, atol=1e-6, rtol=0)
    assert model.training and _hooks(model) == hooks
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match="another input"):
        model.trace(torch.randn(2, 3, 32, 32), cache=first.cache)
    with pytest.raises(ConfigError, match="another model"):
        copy.deepcopy(model).trace(None, cache=first.cache)


def test_trace_maps_boxes_to_the_original_image():
    model = tiny()
    preprocess = {"resize": 32, "img_size": 32, "crop": "none", "mean": [0.5] * 3, "std": [0.5] * 3}
    trace = model.trace(torch.randn(2, 3, 32, 32), original_size=(320, 160), preprocess=preprocess)
    for scale in trace.scales:
        torch.testing.assert_close(scale.box_original, scale.box * torch.tensor([10.0, 5.0, 10.0, 5.0]))


# ----------------------------------------------------------------------------------------- explanations
def test_attention_gradients_match_timm_unfused_path_and_leave_no_grad():
    model = tiny()
    x = torch.randn(2, 3, 32, 32)
    attentions, gradients, target = model.attention_gradients(x, target=1)
    assert target.tolist() == [1, 1]
    assert all(p.grad is None for p in model.parameters()) and _hooks(model) == 0
    reference = copy.deepcopy(model.vit).eval()
    seen = []

    def keep(module, inputs, output):
        output.retain_grad()
        seen.append(output)

    for blk in reference.blocks:
        blk.attn.fused_attn = False
        blk.attn.attn_drop.register_forward_hook(keep)
    reference(x)[:, 1].sum().backward()
    for a, g, ref in zip(attentions, gradients, seen):
        torch.testing.assert_close(a, ref.detach(), atol=1e-6, rtol=0)
        torch.testing.assert_close(g, ref.grad, atol=1e-6, rtol=1e-4)


def test_vit_cam_matches_a_hand_made_grad_cam_and_leaves_the_model_alone():
    import cv2

    from fgvc_core.explain.attribution.vit_cam import rams_trans_cam

    model = tiny()
    x = torch.randn(2, 3, 32, 32)
    maps = rams_trans_cam(model, x, target=[0, 2])
    assert maps.shape == (2, 32, 32)
    assert all(p.grad is None for p in model.parameters()) and _hooks(model) == 0 and model.training
    # Hand-made Grad-CAM on a test-owned copy: tokens of the last norm1 -> grid, weights = mean gradient.
    reference = copy.deepcopy(model.vit).eval()
    kept = {}

    def keep(module, inputs, output):
        output.retain_grad()
        kept["tokens"] = output

    reference.blocks[-1].norm1.register_forward_hook(keep)
    logits = reference(x)
    (logits[0, 0] + logits[1, 2]).backward()
    acts = kept["tokens"][:, 1:].detach().reshape(2, 4, 4, 24).permute(0, 3, 1, 2)
    grads = kept["tokens"].grad[:, 1:].reshape(2, 4, 4, 24).permute(0, 3, 1, 2)
    cams = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1)).numpy()
    for b in range(2):
        cam = cams[b] - cams[b].min()
        cam = cv2.resize(cam / (1e-7 + cam.max()), (32, 32))
        cam = (cam - cam.min()) / (1e-7 + (cam - cam.min()).max())  # grad-cam rescales after the layer mean
        np.testing.assert_allclose(maps[b].numpy(), cam, atol=1e-4)


def test_a_threshold_step_that_proposes_a_box_seen_before_reuses_its_zoomed_pass(monkeypatch):
    """Slider steps: the box lives on the patch grid, so a step back to a box seen before must not rerun scale 2."""
    from fgvc_core.models.rams_trans import vit as vitlib
    from fgvc_core.models.rams_trans.trace import ZOOM_CACHE

    torch.manual_seed(0)
    model = fgvc_core.build_model(
        "rams_trans", 5, backbone="vit_tiny_patch16_224", img_size=32, patch_size=8,
        vit_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2},
    ).eval()  # fmt: skip
    x = torch.randn(1, 3, 32, 32)
    first = model.trace(x, threshold=1.0)
    calls = []
    real = vitlib.forward_scale
    monkeypatch.setattr(vitlib, "forward_scale", lambda *a, **k: calls.append(1) or real(*a, **k))
    thresholds = [1.0, 1.05, 1.0, 0.95, 1.0]
    traces = [model.trace(None, threshold=t, cache=first.cache) for t in thresholds]
    boxes = {tuple(t.scales[1].box.flatten().tolist()) for t in traces}
    assert len(calls) <= len(boxes) <= len(thresholds) and len(boxes) <= ZOOM_CACHE
    assert len(calls) == len(boxes) - 1  # threshold 1.0's box was zoomed by the first trace already
    for t, threshold in zip(traces, thresholds):  # equal to a fresh trace with no reuse at all
        fresh = model.trace(x, threshold=threshold)
        torch.testing.assert_close(t.probs, fresh.probs)
        torch.testing.assert_close(t.scales[1].crop, fresh.scales[1].crop)
        torch.testing.assert_close(t.scales[1].rollout, fresh.scales[1].rollout)
