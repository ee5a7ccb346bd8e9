"""build_model's door: unknown names and bad class counts give clear errors."""

from __future__ import annotations

import pytest

import fgvc_core
from fgvc_core.errors import ConfigError


def test_list_models():
    from fgvc_core.models import list_models

    assert list_models() == ["cra_smra", "rams_trans"]


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
