"""SMRAM, CCMP and L_div against naive re-computations (docs/methods/cra_smra.md, SMRAM)."""

from __future__ import annotations

import pytest
import torch

from fgvc_core.models.cra_smra.smram import Smram, ccmp, diversity_loss, spatial_softmax


def _naive_l_div(maps: torch.Tensor) -> float:
    b, k, h, w = maps.shape
    total = 0.0
    for i in range(b):
        spread = sum(max(float(maps[i, c, y, x]) for c in range(k)) for y in range(h) for x in range(w))
        total += 1.0 - spread / k
    return total / b


def test_spatial_softmax_matches_naive():
    logits = torch.randn(2, 3, 4, 5)
    maps = spatial_softmax(logits)
    e = torch.exp(logits)
    torch.testing.assert_close(maps, e / e.sum(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(2, 3))


def test_ccmp_is_the_per_pixel_max():
    maps = torch.rand(2, 3, 4, 4)
    expected = torch.stack([torch.maximum(torch.maximum(m[0], m[1]), m[2]) for m in maps])
    assert torch.equal(ccmp(maps), expected)


def test_l_div_is_zero_for_disjoint_one_hot_maps():
    maps = torch.zeros(2, 3, 3, 3)
    maps[:, 0, 0, 0] = maps[:, 1, 1, 2] = maps[:, 2, 2, 1] = 1.0
    assert float(diversity_loss(maps)) == pytest.approx(0.0, abs=1e-7)


def test_l_div_is_two_thirds_for_identical_maps():
    one = spatial_softmax(torch.randn(2, 1, 5, 5))
    maps = one.expand(2, 3, 5, 5)
    assert float(diversity_loss(maps)) == pytest.approx(1.0 - 1.0 / 3.0, abs=1e-6)


def test_l_div_matches_naive_and_lies_between_the_extremes():
    maps = spatial_softmax(torch.randn(4, 3, 3, 4) * 3)
    per_image = diversity_loss(maps, reduction="none")
    assert per_image.shape == (4,)
    assert float(diversity_loss(maps)) == pytest.approx(_naive_l_div(maps), abs=1e-6)
    assert bool(((per_image >= -1e-6) & (per_image <= 2 / 3 + 1e-6)).all())
    with pytest.raises(ValueError):
        diversity_loss(maps, reduction="sum")


def _set_random_bn(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.running_mean.normal_()
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.normal_()
                bn.bias.normal_()


def test_avgpool_smram_matches_naive_eval_computation():
    smram = Smram(6, strides=(8, 16, 32), resize="avgpool")
    _set_random_bn(smram)
    smram.eval()
    feats = [torch.randn(2, 6, 8, 8), torch.randn(2, 6, 4, 4), torch.randn(2, 6, 2, 2)]
    maps = smram(feats)
    assert maps.shape == (2, 3, 2, 2)
    for k, x in enumerate(feats):
        f = x.shape[-1] // 2  # average over f×f blocks to reach 2×2
        pooled = x.reshape(2, 6, 2, f, 2, f).mean(dim=(3, 5))
        bn = smram.norm[k]
        normed = (pooled - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        normed = normed * bn.weight[:, None, None] + bn.bias[:, None, None]
        logit = torch.einsum("bchw,c->bhw", normed, smram.phi[k].weight[0, :, 0, 0]) + smram.phi[k].bias[0]
        expected = torch.exp(logit) / torch.exp(logit).sum(dim=(1, 2), keepdim=True)
        torch.testing.assert_close(maps[:, k], expected, atol=1e-6, rtol=1e-5)


def test_conv_smram_downsamples_by_strided_convs_and_trains_phi():
    smram = Smram(4, strides=(8, 16, 32), resize="conv")
    assert [len(d) if isinstance(d, torch.nn.Sequential) else 0 for d in smram.downsample] == [2, 1, 0]
    feats = [torch.randn(3, 4, 12, 12), torch.randn(3, 4, 6, 6), torch.randn(3, 4, 3, 3)]  # odd sizes: pooled
    maps = smram(feats)
    assert maps.shape == (3, 3, 3, 3)
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(3, 3))
    diversity_loss(maps).backward()
    assert all(float(phi.weight.grad.abs().sum()) > 0 for phi in smram.phi)


def test_unknown_resize_is_rejected():
    with pytest.raises(ValueError, match="avgpool"):
        Smram(4, resize="nearest")
