"""Attention rollout and gradient rollout against a naive full-matrix chain written here."""

from __future__ import annotations

import pytest
import torch

from fgvc_core.errors import ConfigError
from fgvc_core.ops.rollout import HEAD_FUSIONS, attention_rollout, fuse_layers, fused_rollout, gradient_rollout


def _random_attention(layers=4, batch=3, heads=2, n=7) -> torch.Tensor:
    """(L, B, H, N, N) with softmax-normalised rows, as a ViT produces."""
    return torch.randn(layers, batch, heads, n, n).mul(2.0).softmax(dim=-1)


def _naive_scores(fused: torch.Tensor, query: str, start_layer: int, discard_ratio: float = 0.0) -> torch.Tensor:
    """R = Â_L ⋯ Â_start as an explicit N×N product per image (Abnar & Zuidema: joint_l = aug_l @ joint_{l-1})."""
    layers, batch, n, _ = fused.shape
    out = []
    for b in range(batch):
        joint = torch.eye(n, dtype=torch.float64)
        for layer in range(start_layer, layers):
            a = fused[layer, b].double().clone()
            if discard_ratio > 0:
                k = int((n - 1) * discard_ratio)
                for row in range(n):
                    order = torch.argsort(a[row, 1:])[:k] + 1  # lowest patch columns; CLS column 0 kept
                    a[row, order] = 0.0
            aug = a + torch.eye(n, dtype=torch.float64)
            aug = aug / aug.sum(dim=1, keepdim=True)
            joint = aug @ joint
        row = joint[0] if query == "cls" else joint.mean(dim=0)
        scores = row[1:]
        out.append(scores / scores.max())
    return torch.stack(out).float()


def _fuse(att: torch.Tensor, how: str) -> torch.Tensor:
    return {"mean": att.mean(2), "max": att.max(2).values, "min": att.min(2).values}[how]


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("query", ["cls", "mean"])
@pytest.mark.parametrize("start_layer", [0, 2])
def test_rollout_equals_full_matrix_chain(head_fusion, query, start_layer):
    att = _random_attention()
    expected = _naive_scores(_fuse(att, head_fusion), query, start_layer)
    got = attention_rollout(att, head_fusion=head_fusion, query=query, start_layer=start_layer)
    assert got.shape == (3, 6)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # A list of per-layer tensors is the same input as the stacked tensor.
    from_list = attention_rollout(list(att), head_fusion=head_fusion, query=query, start_layer=start_layer)
    torch.testing.assert_close(from_list, got, atol=0, rtol=0)


def test_cls_and_mean_queries_differ_and_max_is_one():
    att = _random_attention()
    cls = attention_rollout(att, query="cls")
    mean = attention_rollout(att, query="mean")
    assert not torch.allclose(cls, mean)
    torch.testing.assert_close(cls.max(dim=1).values, torch.ones(3))
    assert (cls > 0).all()


def test_discard_per_row_never_drops_cls_column_and_handles_every_image():
    att = _random_attention(layers=3, batch=4, heads=3, n=9)
    got = attention_rollout(att, discard_ratio=0.5, head_fusion="max")
    expected = _naive_scores(_fuse(att, "max"), "cls", 0, discard_ratio=0.5)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # vit-explain only handled image 0: here each image alone gives its own row of the batched result.
    for b in range(4):
        alone = attention_rollout(att[:, b : b + 1], discard_ratio=0.5, head_fusion="max")
        torch.testing.assert_close(alone[0], got[b], atol=1e-6, rtol=0)
    assert not torch.allclose(got, attention_rollout(att, head_fusion="max"))


def test_single_fused_head_is_accepted_as_is():
    att = _random_attention()
    fused = att.mean(2, keepdim=True)
    for how in ("mean", "max", "min"):
        torch.testing.assert_close(attention_rollout(fused, head_fusion=how), attention_rollout(att), atol=1e-6, rtol=0)


def test_gradient_rollout_matches_naive():
    att = _random_attention(layers=3, batch=2, heads=4, n=5)
    grads = torch.randn_like(att)
    fused = (att * grads).clamp(min=0).mean(2)  # clamp each head, then average the heads
    for query in ("cls", "mean"):
        expected = _naive_scores(fused, query, 1)
        got = gradient_rollout(att, grads, query=query, start_layer=1)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # Negative gradients everywhere leave only the identity: the CLS token attends to itself, patches score 0.
    assert torch.count_nonzero(gradient_rollout(att, -att.abs() - 1e-3)) == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"head_fusion": "median"}, "head_fusion"),
        ({"query": "all"}, "query"),
        ({"discard_ratio": 1.0}, "discard_ratio"),
        ({"start_layer": 4}, "start_layer"),
    ],
)
def test_bad_options_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        attention_rollout(_random_attention(), **kwargs)


def test_bad_shapes_raise_config_error():
    with pytest.raises(ConfigError, match="shape"):
        attention_rollout(torch.rand(2, 3, 4, 4))
    with pytest.raises(ConfigError, match="same shape"):
        gradient_rollout(_random_attention(), _random_attention(layers=2))
    with pytest.raises(ConfigError, match="empty"):
        attention_rollout([])


@pytest.mark.parametrize("fusion", HEAD_FUSIONS)
def test_fused_rollout_of_fused_layers_equals_the_naive_chain(fusion):
    att = _random_attention(layers=3, batch=2, heads=4, n=9)
    fused = fuse_layers(list(att), fusion)  # a list of per-layer tensors, as the ViT returns them
    assert fused.shape == (3, 2, 9, 9)
    torch.testing.assert_close(fused, _fuse(att, fusion), atol=0, rtol=0)
    for query, start, discard in [("cls", 0, 0.0), ("mean", 1, 0.25)]:
        expected = _naive_scores(_fuse(att, fusion), query, start, discard)
        got = fused_rollout(fused, discard_ratio=discard, query=query, start_layer=start)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(got, attention_rollout(att, fusion, discard, query, start), atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="shape"):
        fused_rollout(att)  # 5-D: not fused
    with pytest.raises(ConfigError, match="head_fusion"):
        fuse_layers(att, "median")
