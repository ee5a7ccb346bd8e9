"""The Tune page's form values, computed in fgvc_core: the δ grid of the sweep and the training form's overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from fgvc_core.app.sweeps import delta_grid
from fgvc_core.app.training_form import form_overrides

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


@pytest.mark.parametrize(
    ("low", "high", "step", "expected"),
    [
        (0.5, 1.0, 0.25, [0.5, 0.75, 1.0]),
        (0.4, 0.7, 0.1, [0.4, 0.5, 0.6, 0.7]),  # no float drift: 0.7 is reached and written as 0.7
        (0.55, 0.65, 0.05, [0.55, 0.6, 0.65]),
        (0.8, 0.8, 0.1, [0.8]),
        (0.5, 0.95, 0.25, [0.5, 0.75]),  # the last step would pass the upper end
    ],
)
def test_delta_grid_is_every_step_up_to_the_upper_end(low, high, step, expected):
    grid = delta_grid(low, high, step)
    assert grid == expected
    assert all(type(d) is float for d in grid)


def test_form_overrides_set_the_epoch_size_only_for_the_synthetic_stream():
    demo = form_overrides(CONFIGS / "cra_smra_demo.yaml", 2, 100, 64, "model.gamma=0.5\nmodel.delta=0.8")
    assert demo == [
        "train.epochs=2",
        "train.max_steps=100",
        "data.train_samples=64",
        "model.gamma=0.5",
        "model.delta=0.8",
    ]
    cub = form_overrides(CONFIGS / "cra_smra_cub.yaml", 1, 0, 64, "")
    assert cub == ["train.epochs=1", "train.max_steps=0"]
