"""Training config loading, overrides and the warm-up + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from fgvc_core.engine.config import load_config
from fgvc_core.engine.schedule import build_scheduler, warmup_cosine_factor
from fgvc_core.errors import ConfigError


def test_yaml_plus_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "model:\n  name: cra_smra\n  delta: 0.9\ntrain:\n  epochs: 3\n  lr: {backbone: 0.0002, cram: 0.006}\n"
    )
    cfg = load_config(path, ["model.delta=0.7", "train.batch_size=8", "model.scale_loss_weights=[1, 0]"])
    assert cfg["model"] == {"name": "cra_smra", "delta": 0.7, "scale_loss_weights": [1, 0]}
    assert cfg["train"]["epochs"] == 3 and cfg["train"]["batch_size"] == 8
    assert cfg["train"]["lr"] == {"backbone": 0.0002, "cram": 0.006}
    assert cfg["train"]["momentum"] == 0.9  # default filled


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("model: {name: x}\ntrain: {epohcs: 3}\n", [], "unknown key.*epohcs"),
        ("model: {name: x}\nextra: {}\n", [], "unknown config section"),
        ("train: {epochs: 3}\n", [], "model.name is required"),
        ("model: {name: x}\n", ["train.epochs=0"], "positive integer"),
        ("model: {name: x}\n", ["train.lr=-1"], "train.lr"),
        ("model: {name: x}\n", ["train.amp=fp8"], "train.amp"),
        ("model: {name: x}\n", ["nonsense"], "section.key=value"),
        ("[1, 2]\n", [], "must hold a mapping"),
        ("model: {name: x\n", [], "not valid YAML"),
    ],
)
def test_bad_configs_say_what_is_wrong(tmp_path, text, overrides, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, overrides)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/recipe.yaml")


def test_warmup_then_cosine_matches_formula():
    total, warm = 100, 10
    assert warmup_cosine_factor(0, total, warm) == pytest.approx(1 / 11)
    assert warmup_cosine_factor(9, total, warm) == pytest.approx(10 / 11)
    assert warmup_cosine_factor(10, total, warm) == pytest.approx(1.0)
    mid = 10 + 45
    assert warmup_cosine_factor(mid, total, warm) == pytest.approx(0.5)
    assert warmup_cosine_factor(total, total, warm) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine_factor(total, total, warm, min_ratio=0.1) == pytest.approx(0.1)
    for step in (20, 37, 80):
        expect = 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
        assert warmup_cosine_factor(step, total, warm) == pytest.approx(expect)


def test_scheduler_scales_every_group_and_resumes_exactly():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": 0.01}])
    sched = build_scheduler(opt, total_steps=20, warmup_steps=5)
    for _ in range(7):
        opt.step()
        sched.step()
    factor = warmup_cosine_factor(7, 20, 5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * factor, 0.01 * factor])
    opt2 = torch.optim.SGD([{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": 0.01}])
    sched2 = build_scheduler(opt2, total_steps=20, warmup_steps=5)
    sched2.load_state_dict(sched.state_dict())
    opt2.load_state_dict(opt.state_dict())
    opt.step(), sched.step(), opt2.step(), sched2.step()
    assert [g["lr"] for g in opt2.param_groups] == pytest.approx([g["lr"] for g in opt.param_groups])


def test_scientific_notation_overrides_are_numbers_and_device_is_a_key():
    cfg = load_config(None, ["model.name=cra_smra", "train.lr=1e-3", "train.weight_decay=5E-4", "train.device=cpu"])
    assert cfg["train"]["lr"] == 0.001 and cfg["train"]["weight_decay"] == 0.0005  # YAML 1.1 alone gives strings
    assert cfg["train"]["device"] == "cpu"
    assert load_config(None, ["model.name=x"])["train"]["device"] == "auto"
