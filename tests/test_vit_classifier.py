"""The third registered model, a plain timm ViT classifier: its options, trace, rollout cache, local weights, and the
explain machinery it reuses (ViT CAMs, the generic export views, explanation scoring). The shared contract (forward,
loss, checkpoint, resume, DDP) is tests/test_model_contract.py's, parametrised over every registered model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import fgvc_core
from fgvc_core.errors import ConfigError
from fgvc_core.models.registry import get_spec
from fgvc_core.testing.oracle import matrix_chain_rollout
from tests.engine_fixtures import TINY_MODELS

OPTIONS = {k: v for k, v in TINY_MODELS["vit_classifier"].items() if k != "name"}


def _model(**changes):
    torch.manual_seed(0)
    return fgvc_core.build_model("vit_classifier", 4, **{**OPTIONS, **changes}).eval()


@pytest.fixture()
def model_x():
    model = _model()
    with torch.no_grad():  # peaked attention, so rollout options visibly change the map
        for block in model.vit.blocks:
            block.attn.qkv.weight.mul_(6.0)
    return model, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"head_fusion": "median"}, "head_fusion"),
        ({"rollout_query": "patch"}, "rollout_query"),
        ({"discard_ratio": 1.0}, "discard_ratio"),
        ({"start_layer": 2}, "start_layer"),  # the tiny ViT has blocks 0 and 1
        ({"img_size": 30}, "multiple of the patch size"),
        ({"img_size": True}, "img_size"),
        ({"drop_rate": -0.1}, "drop_rate"),
        ({"depth_typo": 3}, "unknown vit_classifier option"),
    ],
)
def test_invalid_options_are_refused_by_name(bad, match):
    with pytest.raises(ConfigError, match=match):
        _model(**bad)


def test_trace_is_the_eval_prediction_and_the_rollout_of_its_own_attention(model_x):
    model, x = model_x
    trace = model.trace(x, head_fusion="max", rollout_query="mean", start_layer=1)
    torch.testing.assert_close(trace.probs, model.predict(x))
    assert tuple(trace.head_probs) == model.head_names == ("vit",)
    assert len(trace.attentions) == 2 and trace.attentions[0].shape == (2, 2, 17, 17)  # 4x4 patches + CLS
    naive = matrix_chain_rollout(trace.attentions, "max", "mean", 1).view(2, 4, 4)
    torch.testing.assert_close(trace.rollout, naive, atol=1e-5, rtol=1e-4)
    assert trace.options == {"head_fusion": "max", "rollout_query": "mean", "discard_ratio": 0.0, "start_layer": 1}
    explanation = trace.default_map(1)
    assert explanation.name == get_spec("vit_classifier").default_map
    assert explanation.map.shape == (32, 32) and float(explanation.map.max()) == pytest.approx(1.0)


def test_a_cached_trace_reruns_only_the_rollout(model_x):
    model, x = model_x
    first = model.trace(x)
    calls = []
    handle = model.vit.patch_embed.register_forward_hook(lambda *_: calls.append(1))
    try:
        again = model.trace(None, head_fusion="min", discard_ratio=0.5, cache=first.cache)
    finally:
        handle.remove()
    assert calls == []  # no ViT pass
    fresh = model.trace(x, head_fusion="min", discard_ratio=0.5)
    torch.testing.assert_close(again.rollout, fresh.rollout, atol=0, rtol=0)
    assert not torch.equal(again.rollout, first.rollout)
    with pytest.raises(ConfigError, match="another input"):
        model.trace(torch.zeros_like(x), cache=first.cache)
    with pytest.raises(ConfigError, match="another model"):
        _model().trace(None, cache=first.cache)
    with pytest.raises(ConfigError, match="needs an input"):
        model.trace(None)


def test_local_timm_weights_load_into_the_classifier(tmp_path):
    source = _model()
    path = tmp_path / "vit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.vit.state_dict().items()}, str(path))
    torch.manual_seed(1)  # a different random start: the weights must come from the file
    loaded = fgvc_core.build_model("vit_classifier", 4, pretrained=str(path), **OPTIONS)
    assert loaded.pretrained_report.fraction == pytest.approx(1.0)
    for (name, a), b in zip(source.vit.state_dict().items(), loaded.vit.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)
    assert "pretrained" not in loaded.config  # a checkpoint carries the weights itself


def test_vit_cams_come_from_the_shared_explain_machinery_and_leave_the_model_alone(model_x):
    model, x = model_x
    spec = get_spec("vit_classifier")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cam = spec.cam()(model, x, target=2, scale=0, method="gradcam", layer=-1)
    assert cam.shape == (2, 32, 32) and float(cam.min()) >= 0 and float(cam.max()) <= 1 + 1e-6
    assert float(cam.max()) > 0
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match=r"scale must be in \[0, 0\]"):  # one head, one scale
        spec.cam()(model, x, scale=1)


def test_explanation_scoring_and_export_use_the_generic_paths(model_x):
    from fgvc_core.explain.scoring.evaluation import explanation_maps
    from train.explain_views import ExplainOptions, check_options, image_views

    model, x = model_x
    maps, crops, name = explanation_maps(model, x)  # the spec names no evaluation_maps: every default_map
    assert crops is None and name == "attention rollout" and maps.shape == (2, 32, 32)
    expected = np.stack([model.trace(x).default_map(row).map.numpy() for row in range(2)])
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    notes = check_options(model, ExplainOptions(threshold=1.3, delta=0.5))
    assert notes == ["--threshold/--delta ignored for ViT classifier (its trace takes none of them)"]
    with pytest.raises(ConfigError, match="--cam-method for ViT classifier"):
        check_options(model, ExplainOptions(cam_method="finercam"))
    meta = {"classes": ["a", "b", "c", "d"], "preprocess": None}
    views, summary = image_views(model, meta, x[:1], None, ExplainOptions())
    assert [v.name for v in views] == ["prediction", "default_map"]
    assert summary["top1"] in meta["classes"] and 0 < summary["prob"] <= 1


# ------------------------------------------------------------------------------------------------------ the app
def test_the_app_lists_a_vit_classifier_checkpoint_and_its_overview_and_evaluation_pages_work(tmp_path):
    from streamlit.testing.v1 import AppTest

    from tests.app_fixtures import RAMS_SIZE, _meta, app_environment

    with app_environment(tmp_path) as env:
        bench = env["FGVC_DATA_ROOT"]
        classes = fgvc_core.build_dataset("synth", bench, "test").classes
        path = tmp_path / "checkpoints" / "vit_baseline.safetensors"
        fgvc_core.save_checkpoint(_model(), path, _meta(classes, RAMS_SIZE, tmp_path / "bench", {"vit_top1": 0.5}))
        app = str(Path(__file__).resolve().parents[1] / "app.py")
        at = AppTest.from_file(app, default_timeout=120)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.sidebar.selectbox(key="model_vit_classifier").value == str(path)  # listed from checkpoints/
        titles = [h.value for h in at.main.subheader]
        assert {"RAMS-Trans", "CRA-SMRA", "ViT classifier"} <= set(titles)  # a column for each chosen model
        assert not at.main.error
        at.switch_page("pages/evaluation.py").run()
        at.radio(key="eval_model").set_value("vit_classifier").run()
        at.button(key="eval_run_vit_classifier").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert not at.main.error
        assert any("top-1" in m.label.lower() for m in at.main.metric)
