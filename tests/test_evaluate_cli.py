"""train.evaluate and the explanation report: numbers agree with direct computations on the same images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fgvc_core
from fgvc_core.explain.scoring import metrics
from fgvc_core.explain.scoring.evaluation import evaluate_explanations, ground_truth_boxes
from train import evaluate


def test_cli_prints_and_writes_a_consistent_report(tiny_checkpoint, tmp_path, capsys):
    path, bench = tiny_checkpoint
    out = tmp_path / "report.json"
    args = evaluate.get_args_parser().parse_args(
        ["--checkpoint", str(path), "--explain-metrics", "--workers", "0", "--json", str(out)]
    )
    assert evaluate.main(args) == 0
    printed = capsys.readouterr().out
    assert "combined" in printed and "pointing game" in printed and "dppm crop" in printed
    report = json.loads(out.read_text())
    cls, exp = report["classification"], report["explanations"]
    n_test = len(fgvc_core.build_dataset("synth", bench, "test"))
    assert cls["num_samples"] == n_test == exp["images"]
    # Same images, same model, same rule: the occlusion table's clean row is the classification top-1.
    assert exp["occlusion accuracy"]["clean"]["mean"] == pytest.approx(cls["combined"]["top1"])
    assert exp["chance"] == 0.25


def test_baselines_and_crop_recall_match_direct_computation(tiny_checkpoint):
    path, bench = tiny_checkpoint
    model, meta = fgvc_core.load_checkpoint(path)
    raw = fgvc_core.build_dataset("synth", bench, "test")
    report = evaluate_explanations(model, raw, meta["preprocess"], batch_size=5, limit=6, show_progress=False)
    order = np.linspace(0, len(raw) - 1, 6).round().astype(int)  # evenly spaced, across classes
    transform = fgvc_core.build_transform(meta)
    x = torch.stack([transform(raw[i][0]) for i in order])
    parts = [
        metrics.part_boxes_to_input(ground_truth_boxes(raw, i)[0], raw[i][0].size, meta["preprocess"]) for i in order
    ]
    centre = metrics.center_point_baseline(32, parts).mean()
    assert report["pointing game"]["centre"]["mean"] == pytest.approx(centre)
    trace = model.trace(x)
    recall = metrics.crop_recall(trace.scales[1].box.numpy(), parts).mean()
    assert report["dppm crop"]["recall"]["mean"] == pytest.approx(recall)
    hits = metrics.pointing_game(trace.scales[0].rollout.numpy(), parts, 32).mean()
    assert report["pointing game"]["ours"]["mean"] == pytest.approx(hits)


def test_cli_reports_a_bad_checkpoint_without_a_traceback(tmp_path, capsys):
    (tmp_path / "x.safetensors").write_bytes(b"junk")
    args = evaluate.get_args_parser().parse_args(["--checkpoint", str(tmp_path / "x.safetensors")])
    assert evaluate.main(args) == 2
    assert "error:" in capsys.readouterr().err
