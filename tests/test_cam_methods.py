"""The one CAM table: every list of CAM methods (CRA-SMRA, ViT, the model specs, the pages' labels) comes from it."""

from __future__ import annotations

import importlib

import pytest
import pytorch_grad_cam

from fgvc_core.errors import ConfigError
from fgvc_core.explain.attribution import cam, vit_cam
from fgvc_core.explain.attribution.methods import CAM_LABELS, CAM_TABLE, cam_class, methods_for
from fgvc_core.models.registry import list_specs


def test_every_method_has_a_library_class_a_label_and_a_kind():
    for name, method in CAM_TABLE.items():
        assert method.name == name and method.kinds <= {"cnn", "vit"} and method.kinds
        assert cam_class(name) is getattr(pytorch_grad_cam, method.library_class)
        assert CAM_LABELS[name].split(" (")[0] == method.label != ""
    assert CAM_LABELS["scorecam"] == "Score-CAM (slow: one forward per channel)"
    assert [n for n, m in CAM_TABLE.items() if m.cost] == ["scorecam"]


def test_the_model_lists_are_the_table_rows_of_their_kind():
    assert cam.CAM_METHODS == methods_for("cnn") == tuple(CAM_TABLE)  # every method works on the CNN taps
    assert set(vit_cam.CAM_METHODS) == {"gradcam", "gradcam++", "hirescam", "layercam", "xgradcam", "eigencam"}
    assert vit_cam.CAM_METHODS == methods_for("vit")


def test_every_registered_model_offers_only_methods_its_cam_function_accepts():
    for spec in list_specs():
        if spec.cam_function is None:
            assert spec.cam_methods == ()
            continue
        module = importlib.import_module(spec.cam_function.split(":")[0])
        assert set(spec.cam_methods) == set(module.CAM_METHODS), spec.name
        assert all(m in CAM_LABELS for m in spec.cam_methods)  # a page never shows "None" for a method


def test_unknown_names_and_kinds_fail_with_a_config_error():
    with pytest.raises(ConfigError, match="unknown CAM method 'nope'"):
        cam_class("nope")
    with pytest.raises(ConfigError, match="CAM kind"):
        methods_for("rnn")
