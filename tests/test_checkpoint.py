"""Checkpoint IO: round trip, atomicity, exact training-state resume data, and clear errors without unpickling."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import fgvc_core
from fgvc_core.engine import checkpoint as ckpt
from fgvc_core.engine.state_io import flatten_state, unflatten_state
from fgvc_core.errors import CheckpointError
from fgvc_core.models import limits, registry
from fgvc_core.models.base import FGVCModel, ModelOutput


class TinyModel(FGVCModel):
    model_name = "tiny_test"
    head_names = ("only",)

    def __init__(self, num_classes: int, width: int = 8) -> None:
        super().__init__({"num_classes": num_classes, "width": width})
        self.body = nn.Sequential(nn.Linear(4, width), nn.BatchNorm1d(width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        logits = self.head(self.body(x))
        return ModelOutput(logits={"only": logits}, probs=logits.softmax(-1))


def build_tiny(num_classes: int, **options) -> TinyModel:
    return TinyModel(num_classes, **options)


@pytest.fixture(autouse=True)
def _register_tiny(monkeypatch):
    monkeypatch.setitem(registry._BUILDERS, "tiny_test", f"{__name__}:build_tiny")
    monkeypatch.setitem(limits.CHECKPOINT_OPTIONS, "tiny_test", frozenset({"width"}))


def names(k: int) -> dict:
    """The class names every loadable checkpoint needs (issue 15: a sidecar without them is refused)."""
    return {"classes": [f"c{i}" for i in range(k)]}


def test_round_trip_rebuilds_model_and_meta(tmp_path):
    model = TinyModel(5, width=6)
    path = fgvc_core.save_checkpoint(model, tmp_path / "run" / "best.safetensors", {"classes": list("abcde")})
    loaded, meta = fgvc_core.load_checkpoint(path)
    assert isinstance(loaded, TinyModel) and not loaded.training
    assert loaded.config == {"num_classes": 5, "width": 6}
    assert meta["classes"] == list("abcde") and meta["model"]["name"] == "tiny_test"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    x = torch.randn(3, 4)
    model.eval()
    assert torch.equal(loaded(x).logits["only"], model(x).logits["only"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.json", "best.safetensors"]  # no temp files left


def test_fp16_storage_halves_size_and_loads_back_as_fp32(tmp_path):
    model = TinyModel(3, width=64)
    p32 = fgvc_core.save_checkpoint(model, tmp_path / "a.safetensors", names(3))
    p16 = fgvc_core.save_checkpoint(model, tmp_path / "b.safetensors", names(3), dtype="float16")
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    loaded, _ = fgvc_core.load_checkpoint(p16)
    assert loaded.head.weight.dtype == torch.float32
    assert torch.allclose(loaded.head.weight, model.head.weight, atol=1e-3)


def test_training_state_round_trip_is_exact(tmp_path):
    model = TinyModel(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 4)).logits["only"].sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "epoch": 2, "rng": torch.get_rng_state(), "pair": (1, "x")}
    path = fgvc_core.save_checkpoint(model, tmp_path / "last.safetensors", training_state=state)
    back = ckpt.load_training_state(path)
    assert back["epoch"] == 2 and back["pair"] == (1, "x") and torch.equal(back["rng"], state["rng"])
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(back["optimizer"])
    for i, buf in opt.state_dict()["state"].items():
        assert torch.equal(opt2.state_dict()["state"][i]["momentum_buffer"], buf["momentum_buffer"])


def test_state_flattening_refuses_objects():
    skeleton, tensors = flatten_state({0: {"a": torch.ones(2)}, 1: [None, 1.5]})
    json.dumps(skeleton)  # plain JSON
    assert unflatten_state(skeleton, tensors)[1] == [None, 1.5]
    with pytest.raises(TypeError, match="without pickling"):
        flatten_state({"bad": object()})


def test_mismatched_architecture_names_the_keys(tmp_path):
    path = fgvc_core.save_checkpoint(TinyModel(4, width=8), tmp_path / "m.safetensors", names(4))
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["model"]["config"]["width"] = 16
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"does not fit the architecture.*body\.0\.weight"):
        fgvc_core.load_checkpoint(path)


def test_unknown_model_and_bad_sidecars(tmp_path):
    path = fgvc_core.save_checkpoint(TinyModel(4), tmp_path / "m.safetensors", names(4))
    side = path.with_suffix(".json")
    good = side.read_text()
    side.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        fgvc_core.load_checkpoint(path)
    side.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not an FGVC Explorer checkpoint"):
        fgvc_core.load_checkpoint(path)
    side.unlink()
    with pytest.raises(CheckpointError, match="sidecar not found"):
        fgvc_core.load_checkpoint(path)
    side.write_text(good)
    fgvc_core.load_checkpoint(path)  # restored: loads again


def test_corrupt_or_swapped_weights_are_caught_and_never_unpickled(tmp_path):
    path = fgvc_core.save_checkpoint(TinyModel(4), tmp_path / "m.safetensors", names(4))
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits in the tensor payload
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its sidecar"):
        fgvc_core.load_checkpoint(path)

    class Boom:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))

    path.write_bytes(pickle.dumps({"w": Boom()}))  # a pickle posing as weights
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["weights"].pop("sha256")
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        fgvc_core.load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = fgvc_core.save_checkpoint(TinyModel(4), tmp_path / "m.safetensors", {"metrics": {"top1": 0.5}, **names(4)})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        fgvc_core.save_checkpoint(TinyModel(4), path, {"metrics": {"top1": 0.9}, **names(4)})
    assert path.read_bytes() == before
    assert fgvc_core.load_checkpoint(path)[1]["metrics"]["top1"] == 0.5
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_non_json_meta_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="plain JSON"):
        fgvc_core.save_checkpoint(TinyModel(4), tmp_path / "m.safetensors", {"bad": object()})
    with pytest.raises(CheckpointError, match=".safetensors"):
        fgvc_core.save_checkpoint(TinyModel(4), tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


DEMOS = sorted(Path(__file__).resolve().parents[1].glob("checkpoints/**/*.safetensors"))


@pytest.mark.skipif(not DEMOS, reason="no demo checkpoints in this checkout")
@pytest.mark.parametrize("path", DEMOS, ids=lambda p: p.name)
def test_demo_checkpoints_pass_the_untrusted_sidecar_checks(path):
    """The whitelist, caps, header shape check and finite check of issue 15 accept every shipped checkpoint."""
    model, meta = fgvc_core.load_checkpoint(path)
    # The demos and the γ sweep: the default benchmark's 12 classes; the shipped ablation medians: the hard setting's 16
    assert model.num_classes == len(meta["classes"]) == (16 if "ablation" in path.parts else 12)
    assert ckpt.read_header_shapes(path) == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def test_the_shipped_checkpoints_stay_within_the_80_mb_budget():
    """Issue 12: checkpoints/ (demos, γ sweep, ablation medians) must stay under 80 MB in the repository."""
    files = [p for p in (Path(__file__).resolve().parents[1] / "checkpoints").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 80 * 1024 * 1024
