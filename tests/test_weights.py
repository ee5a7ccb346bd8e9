"""Local weight files: safe reading, wrapper/prefix handling, partial loads and clear errors."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from fgvc_core.errors import CheckpointError
from fgvc_core.models.weights import load_matching, read_state_dict


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_reads_safetensors_and_pth_with_wrappers(tmp_path):
    src = _net().state_dict()
    save_file(src, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.items()}}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        got = read_state_dict(tmp_path / name)
        assert set(got) == set(src)
        for key in src:
            assert torch.equal(got[key], src[key])


def test_partial_load_reports_every_kind_of_key(tmp_path):
    target = _net()
    state = {
        "0.weight": torch.full((3, 4), 7.0),  # fits
        "2.weight": torch.zeros(5, 5),  # wrong shape
        "extra.bias": torch.zeros(1),  # not in model
    }
    report = load_matching(target, state)
    assert report.matched == ["0.weight"]
    assert report.shape_mismatch == ["2.weight"]
    assert report.unexpected == ["extra.bias"]
    assert report.missing == ["0.bias", "2.bias"]
    assert torch.equal(target[0].weight, torch.full((3, 4), 7.0))
    assert "1 tensors loaded" in report.summary()


def test_nothing_matching_is_an_error():
    with pytest.raises(CheckpointError, match="right backbone"):
        load_matching(_net(), {"backbone.conv.weight": torch.zeros(1)})


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the hostile file is pickled on purpose
def test_missing_corrupt_and_pickled_objects_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state_dict(tmp_path / "bad.safetensors")

    # A pickle that would run code must never be executed: weights_only refuses it.
    class Boom:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(CheckpointError):
        read_state_dict(evil)
    assert not (tmp_path / "PWNED").exists()


def test_a_load_below_the_minimum_fraction_is_refused_and_copies_nothing():
    target = _net()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    state = {"0.weight": torch.full((3, 4), 7.0), "2.weight": torch.zeros(5, 5)}  # 1 of 4 tensors fits
    with pytest.raises(CheckpointError, match=r"w\.pth fills only 25% of this model's tensors \(at least 50% needed\)"):
        load_matching(target, state, source="w.pth", min_fraction=0.5)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in before.items())


def test_the_load_report_is_logged_with_the_keys_that_did_not_load(caplog):
    state = {"0.weight": torch.zeros(3, 4), "0.bias": torch.zeros(3), "2.weight": torch.zeros(2, 3),
             "extra.bias": torch.zeros(1)}  # fmt: skip
    with caplog.at_level("INFO", logger="fgvc_core.models.weights"):
        load_matching(_net(), state, source="w.pth", min_fraction=0.5)
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        "w.pth: 3 tensors loaded, 1 missing, 1 unexpected, 0 with a different shape; missing: 2.bias; "
        "unexpected: extra.bias"
    )
