"""Issue 15, "Checkpoint sidecars are untrusted input": every crafted sidecar or weights file ends in one
CheckpointError line (CLI: exit 2), before anything is allocated on its word and without touching a named file."""

from __future__ import annotations

import inspect
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import fgvc_core
from fgvc_core.data.transforms import preprocess_config
from fgvc_core.engine import checkpoint as ckpt
from fgvc_core.errors import CheckpointError
from fgvc_core.models import limits, registry
from fgvc_core.models.cra_smra.model import build_cra_smra
from fgvc_core.models.rams_trans.model import build_rams_trans
from tests.app_fixtures import CRA_OPTIONS, tiny_cra, tiny_rams

CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    """One honest tiny checkpoint per model (4 classes), saved with a training state for the resume cases."""
    root = tmp_path_factory.mktemp("honest")
    out = {}
    for name, model, size in (("rams_trans", tiny_rams(), 32), ("cra_smra", tiny_cra(), 64)):
        meta = {"classes": CLASSES, "preprocess": preprocess_config("demo", size)}
        state = {"epoch": 1, "buffer": torch.zeros(3)}
        out[name] = fgvc_core.save_checkpoint(model, root / f"{name}.safetensors", meta, training_state=state)
    return out


def tampered(originals: dict[str, Path], tmp_path: Path, name: str = "rams_trans", edit=None) -> Path:
    """A copy of the honest checkpoint whose sidecar ``edit(meta)`` changed in place."""
    source = originals[name]
    for suffix in (".safetensors", ".json", ".train.safetensors"):
        shutil.copy(source.with_name(source.stem + suffix), tmp_path / f"x{suffix}")
    path = tmp_path / "x.safetensors"
    if edit is not None:
        side = path.with_suffix(".json")
        meta = json.loads(side.read_text())
        edit(meta)
        side.write_text(json.dumps(meta))
    return path


def setter(dotted: str, value: Any):
    """An edit that sets ``meta[a][b]... = value`` (creating dicts on the way)."""

    def edit(meta: dict) -> None:
        *parents, last = dotted.split(".")
        node = meta
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """The device of every build_model call: a crafted size may reach the meta device, never a real one."""
    devices: list[str] = []
    real = registry.build_model

    def recording(*args, **kwargs):
        devices.append(torch.get_default_device().type)
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "build_model", recording)
    return devices


def refused(path: Path, pattern: str) -> str:
    with pytest.raises(CheckpointError, match=pattern) as info:
        fgvc_core.load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# ---------------------------------------------------------------- 1. options that name files, unknown options
@pytest.mark.parametrize(
    ("dotted", "value", "pattern"),
    [
        ("pretrained", "/etc/passwd", r"x\.json: model\.config\.pretrained is not allowed in a checkpoint"),
        ("vit_kwargs.checkpoint_path", "/etc/passwd", r"model\.config\.vit_kwargs\.checkpoint_path is not allowed"),
        ("vit_kwargs.pretrained_cfg_overlay", {"file": "/etc/passwd"}, r"vit_kwargs\.pretrained_cfg_overlay is not"),
        ("vit_kwargs.act_layer", "gelu", r"model\.config\.vit_kwargs\.act_layer is not an option a checkpoint may set"),
        ("vit_kwargs.depth", "2", r"model\.config\.vit_kwargs\.depth must be a number or true/false"),
        ("backbone", "hf-hub:timm/vit_tiny_patch16_224", r"model\.config\.backbone names a file or location"),
        ("backbone", "local-dir:/etc", r"model\.config\.backbone names a file or location"),
        ("backbone", "../../etc/passwd", r"model\.config\.backbone names a file or location"),
        ("surprise", 1, r"model\.config\.surprise is not an option a checkpoint may set"),
        ("drop_rate", {"nested": 1}, r"model\.config\.drop_rate has an unexpected value"),
    ],
)
def test_file_naming_or_unknown_options_are_refused_before_any_build(
    originals, tmp_path, builds, dotted, value, pattern
):
    path = tampered(originals, tmp_path, edit=setter(f"model.config.{dotted}", value))
    refused(path, pattern)
    assert builds == []  # refused before build_model, so timm never saw the option


def test_pretrained_none_is_harmless_and_loads(originals, tmp_path):
    path = tampered(originals, tmp_path, edit=setter("model.config.pretrained", None))
    model, _ = fgvc_core.load_checkpoint(path)
    assert model.num_classes == 4


def test_cra_smra_options_are_whitelisted_too(originals, tmp_path, builds):
    path = tampered(originals, tmp_path, "cra_smra", setter("model.config.pretrained", "/etc/passwd"))
    refused(path, r"model\.config\.pretrained is not allowed")
    path = tampered(originals, tmp_path, "cra_smra", setter("model.config.backbone", "/tmp/evil"))
    refused(path, r"model\.config\.backbone names a file or location")
    assert builds == []


@pytest.mark.parametrize(("name", "builder"), [("rams_trans", build_rams_trans), ("cra_smra", build_cra_smra)])
def test_whitelist_matches_the_builders_options(name, builder):
    options = set(inspect.signature(builder).parameters) - {"num_classes", "pretrained", "unknown"}
    assert limits.CHECKPOINT_OPTIONS[name] == options


# ---------------------------------------------------------------- 2. sizes believed before the weights were read
@pytest.mark.parametrize(
    ("name", "dotted", "value", "pattern"),
    [
        ("rams_trans", "img_size", 100000, r"model\.config\.img_size 100000 is outside the limits \[1, 1024\]"),
        ("rams_trans", "vit_kwargs.embed_dim", 131072, r"vit_kwargs\.embed_dim 131072 is outside the limits"),
        ("rams_trans", "vit_kwargs.depth", 100000, r"vit_kwargs\.depth 100000 is outside the limits \[1, 64\]"),
        ("rams_trans", "num_classes", 10**9, r"model\.config\.num_classes 1000000000 is above the limit of 100000"),
        ("cra_smra", "conv_channels", 10**9, r"model\.config\.conv_channels 1000000000 is outside the limits"),
        ("cra_smra", "num_classes", 10**9, r"num_classes 1000000000 is above the limit"),
    ],
)
def test_sizes_above_the_caps_are_refused_before_any_build(originals, tmp_path, builds, name, dotted, value, pattern):
    refused(tampered(originals, tmp_path, name, setter(f"model.config.{dotted}", value)), pattern)
    assert builds == []


@pytest.mark.parametrize(
    ("name", "dotted", "value", "pattern"),
    [
        ("rams_trans", "img_size", 1024, r"x\.safetensors does not fit the architecture: .*vit\.pos_embed"),
        ("rams_trans", "vit_kwargs.embed_dim", 8192, r"does not fit the architecture: .*vit\.cls_token"),
        ("rams_trans", "vit_kwargs.depth", 64, r"does not fit the architecture: missing vit\.blocks\.2\."),
        ("cra_smra", "conv_channels", 8192, r"does not fit the architecture: different shapes conv_blocks"),
    ],
)
def test_sizes_the_weights_file_does_not_hold_never_reach_a_real_build(
    originals, tmp_path, builds, name, dotted, value, pattern
):
    refused(tampered(originals, tmp_path, name, setter(f"model.config.{dotted}", value)), pattern)
    assert builds == ["meta"]  # shapes compared on the meta device; the real (allocating) build never ran


def test_more_classes_than_the_head_holds_is_a_shape_error(originals, tmp_path, builds):
    def edit(meta):
        meta["model"]["config"]["num_classes"] = 5
        meta["classes"] = [*CLASSES, "e"]

    message = refused(tampered(originals, tmp_path, edit=edit), r"does not fit the architecture")
    assert "vit.head.weight (4, 32)≠(5, 32)" in message
    assert builds == ["meta"]


def test_a_header_claiming_more_bytes_than_the_file_holds_is_refused(originals, tmp_path, builds):
    path = tampered(originals, tmp_path)
    header = json.dumps({"vit.head.weight": {"dtype": "F32", "shape": [10**9, 1000], "data_offsets": [0, 4 * 10**12]}})
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + bytes(64))
    setter("weights.sha256", ckpt.file_sha256(path))(meta := json.loads(path.with_suffix(".json").read_text()))
    path.with_suffix(".json").write_text(json.dumps(meta))
    refused(path, r"x\.safetensors is not a readable safetensors file \(SafetensorError\)")
    assert builds == []


# ---------------------------------------------------------------- 3. tracebacks that are now CheckpointError
@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (setter("format_version", "2"), r"x\.json: format_version must be a positive integer, got '2'"),
        (setter("format_version", 99), r"x\.json was written by a newer FGVC Explorer \(format 99\)"),
        (setter("classes", ["a", "b", "c"]), r"x\.json names 3 classes for a model with 4 outputs"),
        (lambda meta: meta.pop("classes"), r"x\.json has no class names \('classes'\)"),
        (setter("classes", [1, 2, 3, 4]), r"x\.json: classes must be a list of class names \(strings\)"),
        (setter("classes", "abcd"), r"x\.json: classes must be a list of class names"),
        (setter("metrics", "99%"), r"x\.json: metrics must be a JSON object, got str"),
        (setter("dataset", ["synth"]), r"x\.json: dataset must be a JSON object, got list"),
        (setter("weights", "x"), r"x\.json: weights must be a JSON object"),
        (setter("preprocess.img_size", -1), r"x\.json: invalid preprocessing: preprocess\['img_size'\] must be"),
        (setter("preprocess", "demo"), r"x\.json: invalid preprocessing"),
        (setter("preprocess.img_size", 100000), r"x\.json: preprocessing sizes above the limit of 1024 px"),
        (setter("model.name", ["rams_trans"]), r"x\.json: model name must be a string"),
        (setter("model.config.num_classes", "4"), r"model\.config\.num_classes must be an integer >= 2, got '4'"),
    ],
)
def test_malformed_sidecar_fields_are_one_line_errors(originals, tmp_path, edit, pattern):
    refused(tampered(originals, tmp_path, edit=edit), pattern)


def test_deeply_nested_sidecar_is_not_valid_json(originals, tmp_path):
    path = tampered(originals, tmp_path)
    path.with_suffix(".json").write_text("[" * 100_000 + "]" * 100_000)
    refused(path, r"x\.json is not valid JSON")


def nested(levels: int) -> dict:
    node: dict = {}
    for _ in range(levels):
        node = {"a": node}
    return node


@pytest.mark.parametrize(
    ("structure", "pattern"),
    [
        ({"__tensor__": "nope"}, r"x\.train\.safetensors holds no tensor 'nope' that its structure refers to"),
        ({"__tensor__": ["s.buffer"]}, r"holds no tensor"),
        ({"0": 1, "x": 2, "__int_keys__": True}, r"an integer-keyed entry has keys that are not integers"),
        ({"__tuple__": 5}, r"a stored tuple is not a list"),
        (nested(100), r"nested deeper than 64 levels"),
    ],
)
def test_hostile_training_state_structure_is_refused(originals, tmp_path, structure, pattern):
    path = tampered(originals, tmp_path, edit=setter("training_state.structure", structure))
    with pytest.raises(CheckpointError, match=pattern):
        ckpt.load_training_state(path)


def test_training_state_without_structure_is_refused(originals, tmp_path):
    path = tampered(originals, tmp_path, edit=lambda meta: meta["training_state"].pop("structure"))
    with pytest.raises(CheckpointError, match=r"x\.json: training_state has no structure"):
        ckpt.load_training_state(path)


# ---------------------------------------------------------------- 4. non-finite weights
def poisoned(originals, tmp_path, name: str, key: str, value: float) -> Path:
    path = tampered(originals, tmp_path, name)
    weights = load_file(str(path))
    weights[key].view(-1)[0] = value
    save_file(weights, str(path))
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["weights"]["sha256"] = ckpt.file_sha256(path)  # a consistent, deliberately crafted checkpoint
    side.write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [("rams_trans", "vit.head.weight", float("nan")), ("cra_smra", "concat_head.2.weight", float("inf"))],
)
def test_non_finite_weights_are_refused(originals, tmp_path, name, key, value):
    message = refused(poisoned(originals, tmp_path, name, key, value), r"holds non-finite weights \(NaN or inf\)")
    assert message == f"x.safetensors holds non-finite weights (NaN or inf) in {key}; it cannot be used"


def test_negative_batchnorm_variance_is_refused(originals, tmp_path):
    path = poisoned(originals, tmp_path, "cra_smra", "backbone.bn1.running_var", -1.0)  # finite, yet NaN outputs
    message = refused(path, r"negative BatchNorm variances")
    assert message == "x.safetensors holds negative BatchNorm variances in backbone.bn1.running_var; it is broken"


def overflowing(originals, tmp_path) -> Path:
    """Finite float32 weights whose logits overflow to inf, so the softmax is NaN."""
    path = poisoned(originals, tmp_path, "rams_trans", "vit.head.weight", 0.0)
    weights = load_file(str(path))
    weights["vit.head.weight"] = torch.where(torch.arange(32) % 2 == 0, 3e38, -3e38).expand(4, 32).contiguous()
    save_file(weights, str(path))
    setter("weights.sha256", ckpt.file_sha256(path))(meta := json.loads(path.with_suffix(".json").read_text()))
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def test_finite_weights_with_non_finite_outputs_stop_predict(originals, tmp_path, image, capsys):
    from train import predict

    path = overflowing(originals, tmp_path)
    model, meta = fgvc_core.load_checkpoint(path)  # every weight is finite
    assert not torch.isfinite(model.predict(torch.rand(1, 3, 32, 32))).all()
    assert predict.main(predict.get_args_parser().parse_args([image, "--checkpoint", str(path)])) == 2
    captured = capsys.readouterr()
    assert "nan%" not in captured.out and "bird.png" not in captured.out
    assert captured.err.strip() == "error: the model gave non-finite outputs (NaN or inf): its weights overflow; " + (
        "it cannot be used"
    )


# ---------------------------------------------------------------- the CLIs: exit 2, one line, no "nan%"
@pytest.fixture
def image(tmp_path) -> str:
    path = tmp_path / "bird.png"
    Image.new("RGB", (40, 40), (120, 60, 30)).save(path)
    return str(path)


@pytest.mark.parametrize(
    "make",
    [
        lambda o, t: tampered(o, t, edit=setter("model.config.vit_kwargs.checkpoint_path", "/etc/passwd")),
        lambda o, t: tampered(o, t, edit=setter("model.config.img_size", 100000)),
        lambda o, t: tampered(o, t, edit=setter("format_version", "2")),
        lambda o, t: tampered(o, t, edit=setter("classes", ["a"])),
        lambda o, t: tampered(o, t, edit=lambda meta: meta.pop("classes")),
        lambda o, t: poisoned(o, t, "rams_trans", "vit.head.weight", float("nan")),
    ],
)
def test_predict_and_evaluate_exit_2_with_one_line(originals, tmp_path, image, capsys, make):
    from train import evaluate, predict

    path = make(originals, tmp_path)
    assert predict.main(predict.get_args_parser().parse_args([image, "--checkpoint", str(path)])) == 2
    captured = capsys.readouterr()
    assert "nan%" not in captured.out and captured.err.startswith("error: x.")
    assert len(captured.err.strip().splitlines()) == 1
    assert evaluate.main(evaluate.get_args_parser().parse_args(["--checkpoint", str(path)])) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: x.") and len(captured.err.strip().splitlines()) == 1


def test_honest_tiny_checkpoints_still_load_and_predict(originals, tmp_path, image, capsys):
    from train import predict

    for name in ("rams_trans", "cra_smra"):
        model, meta = fgvc_core.load_checkpoint(originals[name])
        assert model.num_classes == 4 and meta["classes"] == CLASSES
        assert predict.main(predict.get_args_parser().parse_args([image, "--checkpoint", str(originals[name])])) == 0
        assert "%" in capsys.readouterr().out
    assert CRA_OPTIONS["conv_channels"] == 16  # the shape cases above rely on the tiny widths
