"""Every CLI argument is checked up front (one ``error:`` line, exit 2); the device defaults to auto; predict goes on
past a bad image; make_synth will not write a model's training stream as a test set; importing a CLI is cheap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from train import cli_args, evaluate, explain, make_synth, predict
from train import train as train_cli

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "pytorch_grad_cam", "sklearn", "streamlit", "timm", "matplotlib", "plotly", "cv2")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"never read: the arguments fail first")
    (tmp_path / "a_file.txt").write_text("x")
    return {"ckpt": str(checkpoint), "file": str(tmp_path / "a_file.txt"), "dir": str(tmp_path)}


BAD = {
    predict: [
        (["img.png", "--checkpoint", "{ckpt}", "--topk", "-3"], "argument --topk: must be an integer >= 1, got -3"),
        (["img.png", "--checkpoint", "{ckpt}", "--topk", "0"], "argument --topk: must be an integer >= 1, got 0"),
        (["img.png", "--checkpoint", "{ckpt}", "--topk", "x"], "argument --topk: must be an integer >= 1, got 'x'"),
        (["img.png", "--checkpoint", "{ckpt}", "--batch-size", "0"], "argument --batch-size: must be an integer >= 1"),
        (["img.png", "--checkpoint", "{ckpt}", "--device", "gpu"],
         "argument --device: must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        (["img.png", "--checkpoint", "{dir}/nope.safetensors"], "argument --checkpoint: no such file: {dir}/nope"),
        (["img.png", "--checkpoint", "{dir}"], "argument --checkpoint: {dir} is a folder, not a file"),
    ],
    evaluate: [
        (["--checkpoint", "{ckpt}", "--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
        (["--checkpoint", "{ckpt}", "--workers", "-1"], "argument --workers: must be an integer >= 0, got -1"),
        (["--checkpoint", "{ckpt}", "--limit", "0"], "argument --limit: must be an integer >= 1, got 0"),
        (["--checkpoint", "{ckpt}", "--json", "{dir}/no/r.json"], "argument --json: no such folder: {dir}/no"),
        (["--checkpoint", "{ckpt}", "--json", "{dir}"], "argument --json: {dir} is a folder, not a file"),
        (["--checkpoint", "{ckpt}", "--data-root", "{dir}/none"], "argument --data-root: no such folder"),
        (["--checkpoint", "{ckpt}", "--device", "cuda:x"], "argument --device: must be auto, cpu, cuda or cuda:N"),
    ],
    explain: [
        (["--checkpoint", "{ckpt}", "--images", "x", "--out", "o", "--dpi", "0"],
         "argument --dpi: must be an integer from 10 to 1000, got 0"),
        (["--checkpoint", "{ckpt}", "--images", "x", "--out", "o", "--topk", "0"], "argument --topk: must be"),
        (["--checkpoint", "{ckpt}", "--images", "x", "--out", "o", "--delta", "nan"],
         "argument --delta: must be a finite number, got 'nan'"),
        (["--checkpoint", "{ckpt}", "--images", "x", "--out", "{file}"], "argument --out: {file} exists and is not"),
    ],
    train_cli: [(["--config", "{dir}/none.yaml"], "argument --config: no such file: {dir}/none.yaml")],
    make_synth: [
        (["--out", "o", "--classes", "1"], "argument --classes: must be an integer from 2 to 45, got 1"),
        (["--out", "o", "--classes", "46"], "argument --classes: must be an integer from 2 to 45, got 46"),
        (["--out", "o", "--per-class", "0"], "argument --per-class: must be an integer >= 1, got 0"),
        (["--out", "o", "--size", "8"], "argument --size: must be an integer from 32 to 4096, got 8"),
        (["--out", "o", "--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
        (["--out", "o", "--test-fraction", "1"], "argument --test-fraction: must lie strictly between 0 and 1"),
        (["--out", "o", "--workers", "0"], "argument --workers: must be an integer >= 1, got 0"),
        (["--out", "o", "--jpeg-quality", "101"], "argument --jpeg-quality: must be an integer from 1 to 100"),
        (["--contact-sheet", "{dir}"], "argument --contact-sheet: {dir} is a folder, not a file"),
    ],
}  # fmt: skip
CASES = [(module, argv, message) for module, cases in BAD.items() for argv, message in cases]


@pytest.mark.parametrize(("module", "argv", "message"), CASES, ids=[f"{m.__name__}{a[-2:]}" for m, a, _ in CASES])
def test_a_bad_argument_is_one_error_line_and_exit_2(module, argv, message, files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(**files) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        module.get_args_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message.format(**files) in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("module", [predict, evaluate, explain])
def test_the_device_defaults_to_auto_and_auto_follows_cuda(module, files, monkeypatch):
    argv = {predict: ["img.png"], evaluate: [], explain: ["--images", "x", "--out", "o"]}[module]
    assert module.get_args_parser().parse_args([*argv, "--checkpoint", files["ckpt"]]).device == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli_args.resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cli_args.resolve_device("auto") == "cuda"


@pytest.mark.parametrize("module", [predict, evaluate, explain])
def test_cuda_without_a_gpu_is_one_line_and_exit_2(module, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    checkpoint, _ = tiny_checkpoint
    argv = {predict: ["img.png"], evaluate: [], explain: ["--images", "x", "--out", str(tmp_path / "o")]}[module]
    args = module.get_args_parser().parse_args([*argv, "--checkpoint", str(checkpoint), "--device", "cuda"])
    assert module.main(args) == 2
    err = capsys.readouterr().err
    assert err == "error: --device cuda: CUDA is not available on this machine; use --device cpu or auto\n"
    assert not (tmp_path / "o").exists()


def _image(path: Path, colour: tuple[int, int, int]) -> str:
    Image.new("RGB", (48, 40), colour).save(path)
    return str(path)


def test_predict_reports_a_bad_image_and_predicts_the_others(tiny_checkpoint, tmp_path, capsys):
    checkpoint, _ = tiny_checkpoint
    good = [_image(tmp_path / "red.png", (220, 30, 30)), _image(tmp_path / "blue.png", (30, 30, 220))]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    argv = [good[0], str(bad), good[1], "--checkpoint", str(checkpoint), "--topk", "2", "--device", "cpu"]
    assert predict.main(predict.get_args_parser().parse_args(argv)) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [lines[0], lines[3]] == good and len(lines) == 6 and lines[1].lstrip().startswith("1. ")
    assert err.count("\n") == 1 and err.startswith(f"skipped {bad}: ")


def test_predict_gives_the_same_numbers_alone_and_in_a_batch(tiny_checkpoint, tmp_path, capsys):
    checkpoint, _ = tiny_checkpoint
    red, blue = _image(tmp_path / "red.png", (220, 30, 30)), _image(tmp_path / "blue.png", (30, 30, 220))
    together = predict.get_args_parser().parse_args([red, blue, "--checkpoint", str(checkpoint), "--device", "cpu"])
    assert predict.main(together) == 0
    both = capsys.readouterr().out.splitlines()
    alone = predict.get_args_parser().parse_args([blue, "--checkpoint", str(checkpoint), "--device", "cpu"])
    assert predict.main(alone) == 0
    assert capsys.readouterr().out.splitlines() == both[len(both) // 2 :]


def test_predict_with_no_readable_image_is_exit_2(tiny_checkpoint, tmp_path, capsys):
    checkpoint, _ = tiny_checkpoint
    args = predict.get_args_parser().parse_args([str(tmp_path / "gone.png"), "--checkpoint", str(checkpoint)])
    assert predict.main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: no image could be read: ")


def test_train_takes_overrides_after_resume(files):
    args = train_cli.parse_args(["--config", files["file"], "train.epochs=2", "--resume", "model.delta=0.8"])
    assert args.resume and args.overrides == ["train.epochs=2", "model.delta=0.8"]


def _sidecar(folder: Path, name: str, data: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"train_config": {"data": data}}))


def test_make_synth_refuses_a_seed_a_checkpoint_trained_on(tmp_path, capsys):
    ckpts = tmp_path / "ckpts"
    _sidecar(ckpts / "sweep", "streamed", {"name": "synth_stream", "seed": 5})
    _sidecar(ckpts, "from_disk", {"name": "synth", "seed": 7})  # trained on a folder: its seed is not a stream
    _sidecar(
        ckpts / "ablation", "hard", {"name": "synth_stream", "seed": 5, "options": {"setting": "hard"}}
    )  # other images
    (ckpts / "junk.json").write_text("{not json")
    assert make_synth.training_stream_seeds(ckpts) == {5: ["sweep/streamed"]}
    out = tmp_path / "bench"
    argv = ["--out", str(out), "--classes", "2", "--per-class", "2", "--size", "32", "--quiet", "--checkpoints",
            str(ckpts)]  # fmt: skip
    assert make_synth.main([*argv, "--seed", "5"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: seed 5 is the training stream of sweep/streamed: its test split would hold their training images; "
        "pick another --seed (the demo's test data uses 1) or pass --allow-train-seed\n"
    )
    assert not out.exists()
    assert make_synth.main([*argv, "--seed", "5", "--allow-train-seed"]) == 0 and out.is_dir()
    assert make_synth.main([*argv, "--seed", "7", "--overwrite"]) == 0


def test_make_synth_refuses_the_shipped_demo_models_training_seed(tmp_path, capsys):
    sidecars = [json.loads(p.read_text()) for p in (REPO / "checkpoints").glob("**/*.json")]
    seeds = {s["train_config"]["data"]["seed"] for s in sidecars if s["train_config"]["data"]["name"] == "synth_stream"}
    assert seeds == {0}  # what the demo recipes record
    assert make_synth.main(["--out", str(tmp_path / "b"), "--seed", "0", "--quiet"]) == 2
    assert "seed 0 is the training stream of cra_smra_demo" in capsys.readouterr().err
    assert make_synth.get_args_parser().parse_args(["--out", "x"]).seed == 1  # the default is the demo's test seed


@pytest.mark.parametrize("module", ["train.train", "train.evaluate", "train.predict", "train.explain",
                                    "train.make_synth", "fgvc_core"])  # fmt: skip
def test_importing_a_cli_imports_no_heavy_library(module):
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == []


def test_importing_an_explain_submodule_does_not_scan_the_others():
    code = (f"import sys; from fgvc_core.explain.rendering import plots; import fgvc_core.explain as E; "
            f"E.pointing_game; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")  # fmt: skip
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert not {"pytorch_grad_cam", "sklearn", "streamlit", "timm"} & set(loaded.stdout.split())


def test_explain_names_are_served_from_one_table_and_unknown_names_fail_at_once():
    import fgvc_core.explain as E
    from fgvc_core.explain.scoring import metrics, perturbation

    assert E.road_scores is perturbation.road_scores and E.pointing_game is metrics.pointing_game
    assert set(E.__all__) <= set(dir(E))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        E.nope  # noqa: B018
    assert not hasattr(metrics, "deletion_insertion_auc")  # served by perturbation only


@pytest.mark.parametrize("module", ["train.train", "train.evaluate", "train.predict", "train.explain",
                                    "train.make_synth"])  # fmt: skip
def test_help_answers_without_loading_a_model(module):
    helped = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: ")
