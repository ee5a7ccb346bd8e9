"""build_model's door: unknown names and bad class counts give clear errors."""

from __future__ import annotations

import pytest

import fgvc_core
from fgvc_core.errors import ConfigError


def test_list_models():
    from fgvc_core.models import list_models

    assert list_models() == ["cra_smra", "rams_trans", "vit_classifier"]


@pytest.mark.parametrize("num_classes", [0, 1, 2.5, "3"])
def test_bad_num_classes(num_classes):
    with pytest.raises(ConfigError, match="num_classes"):
        fgvc_core.build_model("cra_smra", num_classes)


def test_unknown_model_names_the_choices():
    with pytest.raises(ConfigError, match="cra_smra, rams_trans"):
        fgvc_core.build_model("resnet", 10)


def test_public_api_is_lazy_and_complete():
    for name in fgvc_core.__all__:
        assert name in dir(fgvc_core)
    with pytest.raises(AttributeError):
        fgvc_core.not_a_thing  # noqa: B018


# ---------------------------------------------------------------- the model specs (one contract per model)
def test_every_builder_has_a_spec_and_the_app_order_is_registration_order():
    from fgvc_core.models.registry import get_spec, list_models, list_specs

    specs = list_specs()
    assert [s.name for s in specs] == ["rams_trans", "cra_smra", "vit_classifier"]  # the app's order
    assert sorted(s.name for s in specs) == list_models()
    assert [get_spec(s.name) for s in specs] == specs
    assert {s.name: s.title for s in specs} == {
        "rams_trans": "RAMS-Trans",
        "cra_smra": "CRA-SMRA",
        "vit_classifier": "ViT classifier",
    }
    assert {s.name: s.demo_file for s in specs} == {
        "rams_trans": "rams_trans_demo.safetensors",
        "cra_smra": "cra_smra_demo.safetensors",
        "vit_classifier": None,  # no demo checkpoint: the app lists it once a checkpoint exists
    }


def test_get_spec_of_an_unknown_model_names_the_choices():
    from fgvc_core.models.registry import get_spec

    with pytest.raises(ConfigError, match="unknown model 'resnet'; choose one of cra_smra, rams_trans, vit_classifier"):
        get_spec("resnet")


def test_a_spec_refuses_unknown_pages_trace_context_and_a_second_registration():
    from fgvc_core.models.registry import ModelSpec, get_spec, register

    base = dict(name="x", title="X", builder="m:f", trace_type="m:T", default_map="m", transform_preset="demo",
                checkpoint_options=frozenset())  # fmt: skip
    with pytest.raises(ConfigError, match="unknown app page"):
        ModelSpec(**base, pages=("overview", "zoom"))
    with pytest.raises(ConfigError, match="trace_context"):
        ModelSpec(**base, trace_context=("device",))
    with pytest.raises(ConfigError, match="registered already"):
        register(get_spec("cra_smra"))


@pytest.mark.parametrize("name", ["rams_trans", "cra_smra", "vit_classifier"])
def test_spec_targets_resolve_and_match_the_model(name):
    from fgvc_core.data.transforms import PRESETS
    from fgvc_core.models import limits
    from fgvc_core.models.registry import get_spec

    spec = get_spec(name)
    assert spec.transform_preset in PRESETS
    assert limits.CHECKPOINT_OPTIONS[name] == spec.checkpoint_options
    assert limits.SIZE_CAPS[name] == spec.size_caps
    builder, trace_type = spec.build(), spec.trace_class()
    assert callable(builder) and isinstance(trace_type, type)
    assert builder.__name__ == f"build_{name}"


def test_importing_the_registry_imports_neither_torch_nor_timm():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; from fgvc_core.models.registry import list_specs; list_specs(); "
        "print(' '.join(m for m in ('torch', 'timm', 'pytorch_grad_cam') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    loaded = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == []
