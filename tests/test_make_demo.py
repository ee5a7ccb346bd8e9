"""Demo export: fp16 weights, classification and explanation metrics in the sidecar, loadable by the app."""

from __future__ import annotations

import json

import torch

import fgvc_core
from train import make_demo


def test_export_writes_fp16_with_metrics(tiny_checkpoint, tmp_path):
    path, bench = tiny_checkpoint
    target = tmp_path / "out" / "demo.safetensors"
    meta = make_demo.export(path, target, explain_limit=8)
    side = json.loads(target.with_suffix(".json").read_text())
    assert side["weights"]["dtype"] == "float16"
    assert side["metrics"]["combined_top1"] == meta["metrics"]["combined_top1"]
    assert 0 <= side["metrics"]["combined_top1"] <= 1 and len(side["metrics"]["per_class_accuracy"]) == 4
    assert side["explain_metrics"]["images"] == 8 and "pointing game" in side["explain_metrics"]
    original, _ = fgvc_core.load_checkpoint(path)
    exported, exported_meta = fgvc_core.load_checkpoint(target)
    assert exported_meta["classes"] == side["classes"]
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(exported.predict(x), original.predict(x), atol=2e-2)


def test_demo_runs_cover_both_models_and_a_gamma_sweep_with_zero():
    names = set(make_demo.DEMO_RUNS)
    assert {"rams_trans_demo", "cra_smra_demo"} <= names
    gammas = {o for n, (_, overrides) in make_demo.DEMO_RUNS.items() if n.startswith("sweep/") for o in overrides}
    assert {"model.gamma=0", "model.gamma=1", "model.gamma=2"} <= gammas


def test_stash_and_restore_copy_exactly_the_resumable_files(tmp_path):
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    for name in (*make_demo.RESUMABLE, "tb_event", ".status.json.tmp"):
        (run / name).write_text(name)
    copied = make_demo.copy_run(run, tmp_path / "wip" / "x")
    assert sorted(copied) == sorted(make_demo.RESUMABLE)
    assert sorted(p.name for p in (tmp_path / "wip" / "x").iterdir()) == sorted(make_demo.RESUMABLE)
    assert (tmp_path / "wip" / "x" / "last.json").read_text() == "last.json"
