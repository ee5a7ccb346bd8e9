"""train.explain: every view of both models is exported for good images, a corrupt one is reported and skipped."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

import fgvc_core
from fgvc_core.data.transforms import preprocess_config
from tests.engine_fixtures import write_tiny_benchmark
from train import explain
from train.explain_views import ExplainOptions, image_views

CLASSES = ["c0", "c1", "c2", "c3"]
TINY = {
    "rams_trans": {"backbone": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8, "drop_rate": 0.0,
                   "vit_kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2}},
    "cra_smra": {"backbone": "resnet_tiny", "conv_channels": 32, "conv_mid_channels": 16, "head_hidden": 32},
}  # fmt: skip
EXPECTED = {
    "rams_trans": {"prediction.png", "dppm.png", "report.html"}
    | {f"{v}_scale{s}.png" for v in ("rollout", "attention", "gradient_rollout", "vit_cam") for s in (1, 2)},
    "cra_smra": {"prediction.png", "stage_cam.png", "smram.png", "report.html"}
    | {f"{v}_stage{s}.png" for v in ("cram", "channel_maps") for s in (3, 4, 5)},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    bench = write_tiny_benchmark(root / "bench", num_classes=4, per_class=1)
    images = sorted((bench / "images").rglob("*.jpg"))[:2]
    bad = root / "corrupt.jpg"
    bad.write_bytes(images[0].read_bytes()[:40])  # a truncated JPEG
    checkpoints = {}
    for name, options in TINY.items():
        torch.manual_seed(0)
        model = fgvc_core.build_model(name, 4, **options)
        meta = {"classes": CLASSES, "preprocess": preprocess_config("demo", 32)}
        checkpoints[name] = fgvc_core.save_checkpoint(model, root / f"{name}.safetensors", meta)
    return root, images, bad, checkpoints


def _run(*argv: str) -> int:
    return explain.main(explain.get_args_parser().parse_args(list(argv)))


@pytest.mark.parametrize("model_name", ["rams_trans", "cra_smra"])
def test_exports_every_view_and_skips_a_corrupt_image(setup, tmp_path, capsys, model_name):
    root, images, bad, checkpoints = setup
    out = tmp_path / "out"
    code = _run("--checkpoint", str(checkpoints[model_name]), "--images", str(images[0]), str(bad), str(images[1]),
                "--out", str(out))  # fmt: skip
    assert code == 1  # some images skipped, the others exported
    assert "corrupt.jpg" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["source"] for r in manifest["images"]] == [str(images[0]), str(images[1])]
    assert [s["source"] for s in manifest["skipped"]] == [str(bad)]
    model, meta = fgvc_core.load_checkpoint(checkpoints[model_name])
    transform = fgvc_core.build_transform(meta)
    index_html = (out / "index.html").read_text()
    for record, path in zip(manifest["images"], images):
        folder = out / record["dir"]
        assert {p.name for p in folder.iterdir()} == EXPECTED[model_name] == set(record["files"])
        for png in folder.glob("*.png"):
            with Image.open(png) as im:
                im.load()
                assert im.format == "PNG" and min(im.size) > 50
            assert f"{record['dir']}/{png.name}" in index_html
        page = (folder / "report.html").read_text()
        assert 'src="../plotly.min.js"' in page and "cdn.plot.ly" not in page and page.count("Plotly.newPlot") >= 2
        # The reported top-1 is the model's combined prediction for that image.
        probs = model.predict(transform(fgvc_core.load_image(path)).unsqueeze(0))[0]
        assert record["top1"] == CLASSES[int(probs.argmax())]
        assert record["prob"] == pytest.approx(float(probs.max()), abs=1e-6)
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    assert "corrupt.jpg" in index_html


def test_folder_input_html_only_inline(setup, tmp_path):
    root, images, _, checkpoints = setup
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(images[0], folder / "a.jpg")
    shutil.copy(images[1], folder / "sub" / "a.jpg")  # same stem: gets its own output folder
    (folder / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    out = tmp_path / "out"
    code = _run("--checkpoint", str(checkpoints["rams_trans"]), "--images", str(folder), "--out", str(out),
                "--format", "html", "--plotlyjs", "inline", "--threshold", "0.9")  # fmt: skip
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["dir"] for r in manifest["images"]] == ["a", "a_2"] and manifest["skipped"] == []
    assert not list(out.rglob("*.png")) and not (out / "plotly.min.js").exists()
    page = (out / "a" / "report.html").read_text()
    # Views without a plotly figure (DPPM, per-layer attention) are embedded as PNG data.
    assert page.count('<img src="data:image/png;base64,') == 3 and "../plotly.min.js" not in page


def test_views_follow_the_overrides(setup):
    _, images, _, checkpoints = setup
    model, meta = fgvc_core.load_checkpoint(checkpoints["rams_trans"])
    image = fgvc_core.load_image(images[0])
    x = fgvc_core.build_transform(meta)(image).unsqueeze(0)
    views, summary = image_views(model, meta, x, image, ExplainOptions(threshold=0.9, cam_method="gradcam++"))
    dppm = next(v for v in views if v.name == "dppm").figure
    assert dppm.axes[2].get_title().startswith("mask α=0.9:")
    assert [v.title for v in views if v.name == "vit_cam_scale2"] == [f"scale 2 ViT gradcam++, class {summary['top1']}"]


def test_fatal_errors_exit_2_without_traceback(setup, tmp_path, capsys):
    _, images, _, checkpoints = setup
    (tmp_path / "x.safetensors").write_bytes(b"junk")
    assert (
        _run("--checkpoint", str(tmp_path / "x.safetensors"), "--images", str(images[0]), "--out", str(tmp_path / "o"))
        == 2
    )
    code = _run("--checkpoint", str(checkpoints["cra_smra"]), "--images", str(images[0]), "--out", str(tmp_path),
                "--cam-method", "nope")  # fmt: skip
    assert code == 2
    assert (
        _run(
            "--checkpoint",
            str(checkpoints["cra_smra"]),
            "--images",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "o"),
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("error:") == 3 and "Traceback" not in err
    assert not (tmp_path / "o").exists()
