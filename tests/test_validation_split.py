"""Model selection on a held-out validation split (never on test), and the (1, 0) RAMS-Trans prediction rule."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

import fgvc_core
from fgvc_core.engine.config import merge_defaults
from fgvc_core.engine.data import build_data, data_preprocess
from fgvc_core.engine.splits import check_split_options, per_class_holdout
from fgvc_core.engine.trainer import TEST_SELECTION_WARNING, run_training
from fgvc_core.errors import ConfigError
from tests import layout_fixtures as lf
from tests.engine_fixtures import tiny_config


# ----------------------------------------------------------------------------------------- the held-out draw
def test_per_class_holdout_matches_a_naive_count_and_is_a_partition() -> None:
    targets = [0] * 20 + [1] * 7 + [2] * 2 + [3] * 1
    train, val = per_class_holdout(targets, 0.1, seed=0)
    assert sorted(train + val) == list(range(len(targets))) and not set(train) & set(val)
    held = Counter(targets[i] for i in val)
    # naive: round(0.1 * n) per class, at least 1 when the class has 2+, never the whole class
    assert held == {0: 2, 1: 1, 2: 1}
    assert Counter(targets[i] for i in train)[3] == 1  # a single-image class stays in training


def test_per_class_holdout_is_deterministic_and_seeded() -> None:
    targets = [i % 5 for i in range(200)]
    assert per_class_holdout(targets, 0.2, 3) == per_class_holdout(targets, 0.2, 3)
    assert per_class_holdout(targets, 0.2, 3)[1] != per_class_holdout(targets, 0.2, 4)[1]
    # adding images to class 4 does not change which images of class 0 are held out
    more = targets + [4] * 30
    first = {i for i in per_class_holdout(targets, 0.2, 3)[1] if targets[i] == 0}
    second = {i for i in per_class_holdout(more, 0.2, 3)[1] if more[i] == 0}
    assert first == second


def test_cub_validation_images_come_from_train_and_never_from_test(tmp_path: Path) -> None:
    w = lf.make_cub(tmp_path)
    data = merge_defaults(
        {"model": {"name": "cra_smra"}, "data": {"name": "cub", "root": str(w.root), "preset": "demo", "img_size": 32}}
    )["data"]
    train, val, test, classes = build_data(data, data_preprocess(data))
    train_paths, val_paths = {p for p, _ in train.samples}, {p for p, _ in val.samples}
    all_train = {p for p, _ in fgvc_core.build_dataset("cub", w.root, "train").samples}
    assert train_paths | val_paths == all_train and not train_paths & val_paths
    assert not val_paths & {p for p, _ in test.samples}
    assert Counter(y for _, y in val.samples) == {0: 1, 1: 1, 2: 1}  # 2 train images a class: one held out
    image, label = val[0]
    assert image.shape == (3, 32, 32) and label == val.samples[0][1]  # the eval transform is applied
    assert train[0][0].size  # training items stay PIL images for the seeded augmentation


@pytest.mark.parametrize(
    ("data", "select_on", "needle"),
    [
        ({"name": "cub", "val_fraction": 0.0}, "val", "needs a validation split"),
        ({"name": "synth_stream", "val_samples": 0}, "val", "needs a validation split"),
        ({"name": "cub"}, "best", "train.select_on"),
        ({"name": "cub", "val_fraction": 1.0}, "val", "val_fraction"),
        ({"name": "cub", "val_fraction": True}, "val", "val_fraction"),
        ({"name": "cub", "val_seed": -1}, "val", "val_seed"),
        ({"name": "cub", "val_split": "test", "test_split": "test"}, "val", "must differ"),
    ],
)
def test_inconsistent_validation_options_are_refused(data: dict, select_on: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):  # the config's rules or the split check, before any work
        merged = merge_defaults({"model": {"name": "cra_smra"}, "data": data})["data"]
        check_split_options(merged, select_on)


# ------------------------------------------------------------------------------------------ the trainer
def _eval_rows(run: Path, split: str) -> dict[int, float]:
    import csv

    rows = csv.DictReader(open(run / "metrics.csv"))
    return {int(r["epoch"]): float(r["value"]) for r in rows if r["split"] == split and r["name"] == "combined_top1"}


@pytest.mark.parametrize("select_on", ["val", "test", "last"])
def test_best_is_chosen_on_the_split_select_on_names(tmp_path: Path, select_on: str, capsys) -> None:
    config = tiny_config(tmp_path, epochs=4, lr=0.2, select_on=select_on)
    best = run_training(config, show_progress=False)
    run = Path(config["train"]["output"])
    meta = json.loads(best.with_suffix(".json").read_text())
    val, test = _eval_rows(run, "val"), _eval_rows(run, "test")
    assert sorted(val) == sorted(test) == [1, 2, 3, 4]
    chosen = {"val": val, "test": test}.get(select_on)
    if chosen is None:  # last: the final epoch, whatever it scored
        expected_epoch = 4
    else:  # the first epoch reaching the maximum (a later tie does not replace it)
        expected_epoch = min(e for e, v in chosen.items() if v == max(chosen.values()))
    assert meta["epoch"] == expected_epoch
    # the sidecar's numbers are that epoch's test numbers, with its validation numbers beside them
    assert meta["metrics"]["combined_top1"] == pytest.approx(test[expected_epoch], abs=1e-6)
    assert meta["metrics"]["val"]["combined_top1"] == pytest.approx(val[expected_epoch], abs=1e-6)
    assert meta["selection"]["select_on"] == select_on
    warned = TEST_SELECTION_WARNING in capsys.readouterr().out
    assert warned == (select_on == "test") and (meta["selection"].get("warning") is not None) == warned


# ---------------------------------------------------------------------------------- RAMS-Trans (1, 0)
def _rams(weights: list[float]) -> torch.nn.Module:
    torch.manual_seed(0)
    model = fgvc_core.build_model(
        "rams_trans", 5, backbone="vit_tiny_patch16_224", img_size=32, patch_size=8, scale_loss_weights=weights,
        vit_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2},
    )  # fmt: skip
    with torch.no_grad():  # a trained scale-2 token differs from scale 1's (at init it is a copy)
        model.extra_cls_tokens[0].normal_()
    return model.eval()


def test_an_untrained_scale_is_left_out_of_the_combined_prediction() -> None:
    x = torch.randn(3, 3, 32, 32)
    official = _rams([1.0, 0.0])
    out = official(x)
    torch.testing.assert_close(official.predict(x), out.logits["scale1"].softmax(-1))
    trace = official.trace(x)
    torch.testing.assert_close(trace.probs, trace.scales[0].probs)
    assert not torch.allclose(trace.probs, trace.scales[1].probs)  # scale 2 still runs and is shown
    both = _rams([1.0, 1.0])
    out = both(x)
    naive = (out.logits["scale1"].softmax(-1) + out.logits["scale2"].softmax(-1)) / 2
    torch.testing.assert_close(both.predict(x), naive)
