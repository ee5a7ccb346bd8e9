"""Values the pages show that the traces carry: RAMS-Trans rollouts under other options, CRA-SMRA's CCMP and h.

The pages read these instead of recomputing them, so each is checked against the model's own computation (the
rollout the DPPM proposal used, smram's functions) and a naive re-computation.
"""

from __future__ import annotations

import pytest
import torch

from fgvc_core import build_model
from fgvc_core.models.cra_smra import smram
from fgvc_core.ops.rollout import attention_rollout
from fgvc_core.testing.oracle import matrix_chain_rollout

CRA_TINY = dict(backbone="resnet_tiny", conv_channels=16, conv_mid_channels=8, head_hidden=16, reduction=4)


# ------------------------------------------------------------------------------------------------ rollout
@pytest.fixture(scope="module")
def rams():
    torch.manual_seed(0)
    vit = {"depth": 3, "embed_dim": 24, "num_heads": 2}
    model = build_model(
        "rams_trans", 4, backbone="vit_tiny_patch16_224", img_size=32, patch_size=8, drop_rate=0.0, vit_kwargs=vit
    ).eval()
    with torch.no_grad():  # peaked attention, so the DPPM picks a real sub-box for scale 2
        for block in model.vit.blocks:
            block.attn.qkv.weight.mul_(6.0)
    return model, torch.randn(2, 3, 32, 32)


@pytest.mark.parametrize("scale", [0, 1])
def test_rollout_with_the_traced_options_is_the_rollout_the_proposal_used(rams, scale):
    model, x = rams
    options = dict(head_fusion="max", rollout_query="mean", discard_ratio=0.3, start_layer=1)
    trace = model.trace(x, **options)
    again = trace.rollout_with(scale, options["head_fusion"], 0.3, "mean", 1)
    assert again.shape == trace.scales[scale].rollout.shape
    torch.testing.assert_close(again, trace.scales[scale].rollout, atol=0, rtol=0)


def test_rollout_with_other_options_equals_a_fresh_trace_and_the_matrix_chain(rams):
    model, x = rams
    base = model.trace(x)  # default options: mean fusion, CLS query, start layer 0
    grid = tuple(base.scales[0].rollout.shape[-2:])
    for fusion, query, start in [("max", "mean", 1), ("min", "cls", 2), ("mean", "mean", 0)]:
        # Scale 1 reuses the cached head-fused maps; a fresh trace with these options fuses from scratch.
        fresh = model.trace(x, head_fusion=fusion, rollout_query=query, discard_ratio=0.0, start_layer=start)
        ours = base.rollout_with(0, fusion, 0.0, query, start)
        torch.testing.assert_close(ours, fresh.scales[0].rollout, atol=1e-6, rtol=0)
        naive = matrix_chain_rollout(base.scales[0].attentions, fusion, query, start).view(-1, *grid)
        torch.testing.assert_close(ours, naive, atol=1e-5, rtol=1e-4)
        # Scale 2 fuses its own per-layer attention.
        later = base.rollout_with(1, fusion, 0.0, query, start)
        naive = matrix_chain_rollout(base.scales[1].attentions, fusion, query, start).view(-1, *grid)
        torch.testing.assert_close(later, naive, atol=1e-5, rtol=1e-4)


def test_rollout_with_a_discard_ratio_matches_the_per_layer_rollout(rams):
    model, x = rams
    base = model.trace(x)
    grid = tuple(base.scales[0].rollout.shape[-2:])
    expected = attention_rollout(base.scales[0].attentions, "max", 0.5, "cls", 1).view(-1, *grid)
    torch.testing.assert_close(base.rollout_with(0, "max", 0.5, "cls", 1), expected, atol=1e-6, rtol=0)
    assert not torch.allclose(expected, base.scales[0].rollout)  # the options really changed the map


# ------------------------------------------------------------------------------------------ CCMP and h
def _naive_ccmp_and_spread(maps: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    b, k, h, w = maps.shape
    best = torch.tensor(
        [[[max(float(maps[i, c, y, x]) for c in range(k)) for x in range(w)] for y in range(h)] for i in range(b)]
    )
    return best, [float(best[i].double().sum()) for i in range(b)]


def test_cra_trace_carries_ccmp_and_h_as_smram_computes_them():
    torch.manual_seed(0)
    model = build_model("cra_smra", 5, **{**CRA_TINY, "variant": "cram_smram"}).eval()
    trace = model.trace(torch.randn(2, 3, 64, 64), delta=0.6)
    maps = trace.smram_maps
    assert torch.equal(trace.ccmp, smram.ccmp(maps))
    torch.testing.assert_close(trace.ccmp_spread, smram.ccmp_spread(maps), atol=0, rtol=0)
    naive_ccmp, naive_h = _naive_ccmp_and_spread(maps)
    torch.testing.assert_close(trace.ccmp, naive_ccmp, atol=1e-7, rtol=0)
    assert trace.ccmp_spread.tolist() == pytest.approx(naive_h, abs=1e-5)
    assert all(1.0 - 1e-5 <= h <= 3.0 + 1e-5 for h in naive_h)
    # L_div = 1 − h/3, per image, as the model computed it on its own maps.
    assert trace.l_div_per_image.tolist() == pytest.approx([1 - h / 3 for h in naive_h], abs=1e-5)


def test_cra_trace_without_smram_has_no_ccmp():
    model = build_model("cra_smra", 5, **{**CRA_TINY, "variant": "cram"}).eval()
    trace = model.trace(torch.randn(1, 3, 64, 64))
    assert trace.smram_maps is None and trace.ccmp is None and trace.ccmp_spread is None
