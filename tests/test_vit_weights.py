"""Local ViT weights into RAMS-Trans: timm state dicts (safetensors / .pth) and Google's original .npz layout."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

import fgvc_core
from fgvc_core.errors import CheckpointError

TINY = {"depth": 2, "embed_dim": 24, "num_heads": 2}
D, HEADS, HD, K = 24, 2, 12, 4


def build(pretrained=None, num_classes=K, img_size=32, **options):
    return fgvc_core.build_model(
        "rams_trans", num_classes, backbone="vit_tiny_patch16_224", img_size=img_size, patch_size=8,
        drop_rate=0.0, vit_kwargs=TINY, pretrained=pretrained, **options,
    )  # fmt: skip


def timm_vit(num_classes=K, img_size=32):
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=num_classes, img_size=img_size, patch_size=8, **TINY
    ).eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_state_dict_gives_identical_scale1_logits(tmp_path, suffix):
    source = timm_vit()
    with torch.no_grad():
        source.cls_token.normal_()  # so that copying it into every scale is visible
    path = tmp_path / f"vit{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    model = build(pretrained=path)
    report = model.pretrained_report
    assert sorted(report.matched) == sorted(state) and not report.missing and not report.shape_mismatch
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = source(x)
    torch.testing.assert_close(model.trace(x).scales[0].logits, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.eval()(x).logits["scale1"], expected, atol=1e-5, rtol=0)
    assert torch.equal(model.extra_cls_tokens[0], source.cls_token)
    assert model.extra_cls_tokens[0] is not model.vit.cls_token


def test_other_head_and_grid_are_reported_and_resampled(tmp_path):
    source = timm_vit(num_classes=7, img_size=16)  # 2x2 grid, 7 classes
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = build(pretrained=path)  # 4x4 grid, 4 classes
    report = model.pretrained_report
    assert sorted(report.shape_mismatch) == ["head.bias", "head.weight"]
    assert "pos_embed" in report.matched and model.vit.pos_embed.shape == (1, 17, D)
    expected = timm.layers.resample_abs_pos_embed(source.pos_embed, new_size=(4, 4), old_size=(2, 2))
    torch.testing.assert_close(model.vit.pos_embed, expected)
    assert torch.equal(model.vit.blocks[1].mlp.fc2.weight, source.blocks[1].mlp.fc2.weight)


def _google_npz(path, num_classes=K, grid=4):
    """A checkpoint in Google's original ViT layout (key names and axis orders from timm's ``_load_weights``)."""
    rng = np.random.default_rng(0)

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    w = {
        "embedding/kernel": r(8, 8, 3, D),  # HWIO
        "embedding/bias": r(D),
        "cls": r(1, 1, D),
        "Transformer/posembed_input/pos_embedding": r(1, 1 + grid * grid, D),
        "Transformer/encoder_norm/scale": r(D),
        "Transformer/encoder_norm/bias": r(D),
        "head/kernel": r(D, num_classes),
        "head/bias": r(num_classes),
    }
    for i in range(2):
        p = f"Transformer/encoderblock_{i}/"
        for n in ("query", "key", "value"):
            w[f"{p}MultiHeadDotProductAttention_1/{n}/kernel"] = r(D, HEADS, HD)
            w[f"{p}MultiHeadDotProductAttention_1/{n}/bias"] = r(HEADS, HD)
        w[f"{p}MultiHeadDotProductAttention_1/out/kernel"] = r(HEADS, HD, D)
        w[f"{p}MultiHeadDotProductAttention_1/out/bias"] = r(D)
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            w[f"{p}{ln}/scale"], w[f"{p}{ln}/bias"] = r(D), r(D)
        w[f"{p}MlpBlock_3/Dense_0/kernel"], w[f"{p}MlpBlock_3/Dense_0/bias"] = r(D, 4 * D), r(4 * D)
        w[f"{p}MlpBlock_3/Dense_1/kernel"], w[f"{p}MlpBlock_3/Dense_1/bias"] = r(4 * D, D), r(D)
    np.savez(path, **w)
    return w


def test_google_npz_loads_through_timm_with_the_written_values(tmp_path):
    path = tmp_path / "ViT-Ti_8.npz"
    w = _google_npz(path)
    model = build(pretrained=path, num_scales=3, threshold=[1.2, 1.3])
    vit = model.vit

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    assert torch.equal(vit.patch_embed.proj.weight, t(w["embedding/kernel"].transpose(3, 2, 0, 1)))
    assert torch.equal(vit.pos_embed, t(w["Transformer/posembed_input/pos_embedding"]))
    for token in (vit.cls_token, *model.extra_cls_tokens):
        assert torch.equal(token, t(w["cls"]))
    assert torch.equal(vit.head.weight, t(w["head/kernel"].T))
    for i, blk in enumerate(vit.blocks):
        p = f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/"
        qkv = np.concatenate([w[f"{p}{n}/kernel"].reshape(D, D).T for n in ("query", "key", "value")])
        assert torch.equal(blk.attn.qkv.weight, t(qkv))
        assert torch.equal(
            blk.attn.qkv.bias, t(np.concatenate([w[f"{p}{n}/bias"].ravel() for n in "query key value".split()]))
        )
        assert torch.equal(blk.attn.proj.weight, t(w[f"{p}out/kernel"].reshape(D, D).T))
        q = f"Transformer/encoderblock_{i}/"
        assert torch.equal(blk.norm2.weight, t(w[f"{q}LayerNorm_2/scale"]))
        assert torch.equal(blk.mlp.fc1.weight, t(w[f"{q}MlpBlock_3/Dense_0/kernel"].T))
    assert model.pretrained_report.missing == []


def test_google_npz_with_another_class_count_skips_the_head(tmp_path):
    path = tmp_path / "vit.npz"
    _google_npz(path, num_classes=10)
    model = build(pretrained=path)
    assert sorted(model.pretrained_report.missing) == ["head.bias", "head.weight"]
    assert "blocks.0.attn.qkv.weight" in model.pretrained_report.matched


def test_bad_weight_files_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        build(pretrained=tmp_path / "missing.safetensors")
    unrelated = tmp_path / "unrelated.safetensors"
    save_file({"layer1.conv.weight": torch.zeros(2, 2)}, str(unrelated))
    with pytest.raises(CheckpointError, match="no tensor"):
        build(pretrained=unrelated)
    broken = tmp_path / "broken.npz"
    np.savez(broken, **{"embedding/kernel": np.zeros((8, 8, 3, D), np.float32)})
    with pytest.raises(CheckpointError, match="npz"):
        build(pretrained=broken)


def test_a_partly_matching_file_below_half_of_the_vit_is_refused(tmp_path, caplog):
    source = {k: v.contiguous() for k, v in timm_vit().state_dict().items()}
    kept = {k: v for k, v in source.items() if not k.startswith("blocks.")}  # embeddings, norm, head: < half
    save_file(kept, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match=r"partial\.safetensors fills only \d+% .*missing: blocks\.0\."):
        build(pretrained=tmp_path / "partial.safetensors")
    save_file(source, str(tmp_path / "full.safetensors"))
    with caplog.at_level("INFO", logger="fgvc_core.models.weights"):
        build(pretrained=tmp_path / "full.safetensors", num_classes=K + 1)  # another head: loaded, and reported
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "other shape: head.bias, head.weight" in caplog.records[0].getMessage()
