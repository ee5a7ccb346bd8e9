"""Every shipped recipe parses, builds its model, and names learning rates for exactly the model's groups."""

from __future__ import annotations

from pathlib import Path

import pytest

import fgvc_core
from fgvc_core.data.transforms import preprocess_config
from fgvc_core.engine.config import load_config
from fgvc_core.engine.optim import named_parameter_groups, resolve_group_lrs

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "train" / "configs").glob("*.yaml"))


def test_recipes_exist_for_both_models_and_all_datasets():
    names = {p.stem for p in CONFIGS}
    for model in ("rams_trans", "cra_smra"):
        for dataset in ("cub", "cars", "aircraft", "dogs", "demo"):
            assert f"{model}_{dataset}" in names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_recipe_builds_its_model_and_lr_groups(path):
    config = load_config(path)
    options = {k: v for k, v in config["model"].items() if k not in ("name", "pretrained")}
    if config["model"]["name"] == "rams_trans" and "demo" not in path.stem:
        options.update(img_size=64)  # same architecture family, smaller grid: keeps the test fast
    model = fgvc_core.build_model(config["model"]["name"], 5, **options)
    groups = named_parameter_groups(model)
    lrs = resolve_group_lrs(list(groups), config["train"]["lr"])
    assert set(lrs) == set(groups)
    preprocess = preprocess_config(config["data"]["preset"], config["data"]["img_size"])
    if "demo" not in path.stem:
        assert config["model"]["pretrained"].startswith("/path/to/")  # a placeholder the user replaces
        assert preprocess["img_size"] == 448
