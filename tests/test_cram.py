"""CRAM and the channel-attention variants against naive re-computations of the equations (docs/methods/cra_smra.md)."""

from __future__ import annotations

import math

import pytest
import torch
from timm.layers.cbam import ChannelAttn

from fgvc_core.errors import ConfigError
from fgvc_core.models.cra_smra.cbam import CbamChannelGate
from fgvc_core.models.cra_smra.channel_attention import NoReattention, create_channel_attention
from fgvc_core.models.cra_smra.cram import Cram, suppressed_channels, suppression_mask


def _cram(channels: int = 12, reduction: int = 3, std: float = 0.5) -> Cram:
    cram = Cram(channels, reduction)
    with torch.no_grad():  # wider weights than the default init, so that I spreads over (0, 1)
        for p in cram.parameters():
            p.normal_(0.0, std)
    return cram


def _naive_importance(cram: Cram, x: torch.Tensor) -> torch.Tensor:
    w1, b1 = cram.mlp.fc1.weight[:, :, 0, 0], cram.mlp.fc1.bias
    w2, b2 = cram.mlp.fc2.weight[:, :, 0, 0], cram.mlp.fc2.bias

    def mlp(v):
        return torch.relu(v @ w1.T + b1) @ w2.T + b2

    b, c = x.shape[:2]
    avg = x.reshape(b, c, -1).sum(-1) / x[0, 0].numel()
    peak = x.reshape(b, c, -1).max(-1).values
    return 1.0 / (1.0 + torch.exp(-(mlp(avg) + mlp(peak))))


def _naive_selection(importance: torch.Tensor, delta: float) -> torch.Tensor:
    selected = torch.zeros(importance.shape, dtype=torch.bool)
    for b in range(importance.shape[0]):
        e = [math.exp(v) for v in importance[b].tolist()]
        soft = [v / sum(e) for v in e]
        for c, v in enumerate(soft):
            selected[b, c] = v >= delta * max(soft)
    return selected


@pytest.mark.parametrize("delta", [0.8, 0.9, 0.97, 1.0])
@pytest.mark.parametrize("omega", [0.0, 0.5, 1.0])
def test_cram_equations_match_naive(delta, omega):
    cram = _cram()
    x = torch.randn(3, 12, 5, 7)
    out = cram(x, delta=delta, omega=omega)
    importance = _naive_importance(cram, x)
    torch.testing.assert_close(out.importance, importance, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.enhanced, x * importance[:, :, None, None], atol=1e-6, rtol=1e-5)
    soft = torch.exp(importance) / torch.exp(importance).sum(1, keepdim=True)
    torch.testing.assert_close(out.importance_softmax, soft, atol=1e-7, rtol=1e-5)
    selected = _naive_selection(out.importance.double(), delta)
    s = torch.where(selected, torch.tensor(omega), torch.tensor(1.0))
    assert torch.equal(out.suppressed_channels, selected)
    assert torch.equal(out.suppression, s)
    torch.testing.assert_close(out.suppressed, x * s[:, :, None, None])
    torch.testing.assert_close(suppression_mask(out.importance_softmax, delta, omega), s)


def test_delta_controls_how_many_channels_are_suppressed():
    cram = _cram(channels=32, reduction=4, std=0.3)  # no saturated (tied) importances
    x = torch.randn(4, 32, 6, 6)
    counts = [int(cram(x, delta=d, omega=0.5).suppressed_channels.sum()) for d in (0.5, 0.7, 0.9, 1.0)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    assert counts[-1] == 4  # δ = 1: exactly the top channel of each image
    assert torch.equal(cram(x, delta=0.6, omega=1.0).suppressed, x)  # ω = 1 suppresses nothing


@pytest.mark.parametrize("delta", [0.3, 0.6, 0.9, 0.99, 1.0])
def test_softmax_threshold_equals_log_threshold(delta):
    # I*_c >= δ·max I*  <=>  I_c >= max I + ln δ  (softmax is monotone)
    importance = torch.rand(64, 40, dtype=torch.float64) * 3
    by_softmax = suppressed_channels(importance.softmax(dim=1), delta)
    by_log = importance >= importance.amax(dim=1, keepdim=True) + math.log(delta)
    assert torch.equal(by_softmax, by_log)


def test_cbam_gate_is_timms_channel_attention_without_suppression():
    gate = CbamChannelGate(16, reduction=4)
    timm_attn = ChannelAttn(16, rd_ratio=1 / 4, mlp_bias=True)
    timm_attn.load_state_dict(gate.mlp.state_dict())
    x = torch.randn(2, 16, 4, 4)
    out = gate(x, delta=0.5, omega=0.0)  # δ, ω have no effect on CBAM
    torch.testing.assert_close(out.enhanced, timm_attn(x))
    assert out.suppressed is out.enhanced
    assert out.suppression is None and out.importance_softmax is None
    torch.testing.assert_close(out.importance, _naive_importance(gate, x), atol=1e-6, rtol=1e-5)


def test_factory_maps_variants_to_classes():
    assert isinstance(create_channel_attention("base", 8), NoReattention)
    assert isinstance(create_channel_attention("cbam", 8), CbamChannelGate)
    assert isinstance(create_channel_attention("cram", 8), Cram)
    assert isinstance(create_channel_attention("cram_smram", 8), Cram)
    x = torch.randn(1, 8, 3, 3)
    out = create_channel_attention("base", 8)(x)
    assert out.enhanced is x and out.suppressed is x and out.importance is None
    with pytest.raises(ConfigError, match="cram_smram"):
        create_channel_attention("se", 8)


def test_gradients_reach_the_mlp_through_x_e_not_through_s():
    cram = _cram()
    x = torch.randn(2, 12, 4, 4)
    cram(x).enhanced.sum().backward()
    assert cram.mlp.fc1.weight.grad.abs().sum() > 0
    cram.zero_grad()
    out = cram(x)
    assert not out.suppression.requires_grad  # S is a step function of I


def test_every_delta_at_or_below_one_over_e_suppresses_every_channel():
    """I in (0, 1) gives I*_c / I*_max = exp(I_c - I_max) > 1/e: the δ range below 1/e is degenerate."""
    from fgvc_core.models.cra_smra.cram import DEGENERATE_DELTA, suppressed_channels

    assert DEGENERATE_DELTA == pytest.approx(0.36788, abs=1e-5)
    importance = torch.rand(64, 256) * 0.98 + 0.01  # sigmoid outputs, far apart as they can be
    importance[:, 0], importance[:, 1] = 0.999, 0.001  # the widest spread
    softmax = importance.softmax(dim=1)
    assert suppressed_channels(softmax, DEGENERATE_DELTA).all()
    assert suppressed_channels(softmax, 0.2).all()
    assert not suppressed_channels(softmax, 0.5).all()  # above 1/e a wide spread keeps some channels
