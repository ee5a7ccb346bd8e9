"""The benchmark scripts run end to end on their tiny configuration, report every row, and derive every ratio from
the times they measured; the naive baselines compute what our code computes. No timing is asserted anywhere."""

from __future__ import annotations

import re
import statistics

import numpy as np
import pytest
import torch

from benchmarks import _timing, interactive, naive, train_throughput
from fgvc_core import build_model
from fgvc_core.models.rams_trans import dppm
from fgvc_core.ops.rollout import attention_rollout


def _table(markdown: str, heading: str) -> list[dict[str, str]]:
    """The rows of the markdown table under ``### <heading>`` as dicts (escaped pipes restored)."""
    section = markdown.split(f"### {heading}", 1)[1].split("\n\n", 2)[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    split = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
    return [dict(zip(split[0], row)) for row in split[2:]]


def _close(shown: str, expected: float, rel: float = 2e-3) -> bool:
    """A 4-significant-digit printed value against the value recomputed from other printed values."""
    return abs(float(shown) - expected) <= rel * abs(expected) + 1e-12


def _median_ms(seconds) -> float:
    ordered = sorted(seconds)
    mid = len(ordered) // 2
    return 1000.0 * (ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2)


def test_interactive_tiny_reports_every_row_and_ratios_from_its_times(tmp_path):
    out = tmp_path / "interactive.md"
    report = interactive.main(["--tiny", "--threads", "1", "--out", str(out)])
    assert out.read_text(encoding="utf-8") == report.markdown
    assert f"Command: `python -m benchmarks.interactive --tiny --threads 1 --out {out}`" in report.markdown

    tokens = interactive.TINY.rollout_tokens
    expected = {"cra.full_trace", "cra.delta_update", "cam.one_pass", "cam.three_passes"}
    expected |= {
        "rams.full_trace",
        "rams.threshold_update",
        "rams.one_scale_pass",
        "rams.rollout_box",
        "rams.rollout_box_unfused",
    }
    expected |= {f"rollout.{kind}.N{n}" for n in tokens for kind in ("row_vector", "matrix_chain")}
    rows = {row["row"]: row for row in _table(report.markdown, "Timings")}
    assert set(rows) == expected == set(report.timings)
    for name, timing in report.timings.items():
        assert timing.repeats == 2 == int(rows[name]["repeats"])
        assert float(rows[name]["median (ms)"]) == pytest.approx(_median_ms(timing.seconds), rel=1e-3)
        assert float(rows[name]["min (ms)"]) <= float(rows[name]["median (ms)"]) <= float(rows[name]["max (ms)"])

    pairs = [("cra.delta_update", "cra.full_trace"), ("rams.threshold_update", "rams.full_trace")]
    pairs += [("rams.threshold_update", "rams.one_scale_pass")]
    pairs += [(f"rollout.row_vector.N{n}", f"rollout.matrix_chain.N{n}") for n in tokens]
    pairs += [("cam.one_pass", "cam.three_passes")]
    ratios = _table(report.markdown, "Ratios (median ours / median baseline; < 1 = ours faster)")
    assert [(r["ours"], r["baseline"]) for r in ratios] == pairs == [(r.ours, r.baseline) for r in report.ratios]
    for shown, ratio in zip(ratios, report.ratios):
        exact = _median_ms(report.timings[ratio.ours].seconds) / _median_ms(report.timings[ratio.baseline].seconds)
        assert ratio.ratio == pytest.approx(exact, rel=1e-12)
        printed = float(rows[ratio.ours]["median (ms)"]) / float(rows[ratio.baseline]["median (ms)"])
        assert _close(shown["ratio"], printed)
        assert shown["status"] in {"not judged (tiny run)", "no goal set"}  # tiny numbers are never judged

    # Every baseline computed the same result as ours (the benchmark measures like for like).
    checks = {(r.ours, r.baseline): r.check for r in report.ratios}
    assert "max |Δ probs| 0.0e+00" in checks[pairs[0]]  # δ-update == a full trace at the same δ
    assert "boxes equal: True, max |Δ probs| 0.0e+00" in checks[pairs[1]]
    for pair in pairs[3:]:
        assert float(re.search(r"\|Δ \w+\| ([0-9.e+-]+)", checks[pair]).group(1)) < 1e-5
    assert "(box = the update's scale-2 box: True)" in rows["rams.rollout_box"]["what"]
    absolute = _table(report.markdown, "Absolute targets")
    assert [(r["row"], r["goal"]) for r in absolute] == [("rams.rollout_box", "<= 30 ms")]


def test_train_throughput_tiny_reports_both_models_and_ratios_from_its_times(tmp_path):
    out = tmp_path / "train.md"
    report = train_throughput.main(["--tiny", "--threads", "1", "--device", "cpu", "--out", str(out)])
    assert out.read_text(encoding="utf-8") == report.markdown
    assert "Training throughput (CPU)" in report.markdown and train_throughput.CPU_LABEL in report.markdown
    rows = _table(report.markdown, "Per variant (img/s = batch / median step time)")
    models = list(train_throughput.MODELS)
    assert [(r["model"], r["variant"]) for r in rows] == [(m, v) for m in models for v in ("naive", "ours")]
    by_key = {(r["model"], r["variant"]): r for r in rows}
    for (model, variant), row in by_key.items():
        result = report.results[(model, variant)]
        assert result.timing.repeats == 2 == int(row["steps"])
        assert result.img_per_s == pytest.approx(result.batch / (_median_ms(result.timing.seconds) / 1000.0))
        assert _close(row["img/s"], int(row["batch"]) / (float(row["step median (ms)"]) / 1000.0))
        gflop = float(row["model GFLOP/step"])
        assert gflop > 0 and _close(row["model TFLOP/s"], gflop / float(row["step median (ms)"]))
        assert row["peak memory (MiB)"] == "n/a" and row["MFU (bf16)"] == "n/a"  # not measured on the CPU
    for row in _table(report.markdown, "Ratios and goals"):
        naive_row, ours_row = by_key[(row["model"], "naive")], by_key[(row["model"], "ours")]
        assert _close(row["img/s ours / naive"], float(ours_row["img/s"]) / float(naive_row["img/s"]))
        assert row["speed goal"] == "not judged (tiny/CPU run)"
        # Same weights, same batch: both variants start from the same loss (fp32 on the CPU).
        assert float(ours_row["first-step loss"]) == pytest.approx(float(naive_row["first-step loss"]), rel=1e-2)


def test_measure_warms_up_then_interleaves_every_row_in_each_round():
    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n) or n) for name in ("a", "b", "c")}
    timings, outputs = _timing.measure(fns, repeats=4, warmup=2)
    assert calls[:6] == ["a", "b", "c", "a", "b", "c"]
    rounds = [calls[6 + 3 * i : 9 + 3 * i] for i in range(4)]
    assert len(calls) == 18 and all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert outputs == {"a": "a", "b": "b", "c": "c"}
    t = _timing.Timing("x", (0.003, 0.001, 0.002, 0.010))
    assert (t.min_ms, t.median_ms, t.max_ms) == pytest.approx((1.0, statistics.median([1, 2, 3, 10]), 10.0))
    assert {name: tm.repeats for name, tm in timings.items()} == {"a": 4, "b": 4, "c": 4}


def test_goal_judgement_and_bf16_peaks():
    assert _timing.Goal("<=", 0.4).judge(0.3).startswith("met")
    assert _timing.Goal("<=", 0.4).judge(0.5).startswith("MISSED by 25%")
    assert _timing.Goal(">=", 3.0).judge(2.4).startswith("MISSED by 20%")
    assert _timing.Goal(">=", 3.0).judge(3.0).startswith("met")
    peaks = {
        "NVIDIA H100 80GB HBM3": 989.0,
        "NVIDIA H100 PCIe": 756.0,
        "NVIDIA H200": 989.0,
        "NVIDIA L40S": 362.0,
        "NVIDIA L4": 121.0,
        "Tesla T4": None,
    }
    assert {name: _timing.bf16_peak_tflops(name) for name in peaks} == peaks


@pytest.mark.parametrize("query", ["cls", "mean"])
@pytest.mark.parametrize("fusion,start", [("mean", 0), ("max", 1)])
def test_matrix_chain_rollout_equals_the_row_vector_rollout(query, fusion, start):
    attentions = torch.randn(4, 3, 2, 10, 10).softmax(dim=-1)
    ours = attention_rollout(attentions, head_fusion=fusion, query=query, start_layer=start)
    # The chain written out here: R = Â_L ⋯ Â_start, then one row (or the mean of the rows), max-normalised.
    eye = torch.eye(10)
    fused = attentions.mean(2) if fusion == "mean" else attentions.amax(2)
    chain = [(a + eye) / (a + eye).sum(-1, keepdim=True) for a in fused[start:]]
    joint = chain[0]
    for a in chain[1:]:
        joint = a @ joint
    row = joint[:, 0, 1:] if query == "cls" else joint.mean(1)[:, 1:]
    expected = row / row.amax(-1, keepdim=True)
    baseline = naive.matrix_chain_rollout(attentions, fusion, query, start)
    torch.testing.assert_close(baseline, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)


def test_scipy_box_matches_the_batched_dppm_box():
    gen = torch.Generator().manual_seed(3)
    scores = torch.rand(40, 6, 7, generator=gen) ** 3
    scores[0] = 1.0  # flat scores: an empty mask at α >= 1, the whole grid
    proposal = dppm.propose(scores, (6, 7), (16, 16), 1.1)
    boxes = [naive.scipy_box(s.numpy(), 1.1) for s in scores]
    assert boxes[0] == (0, 0, 7, 6)
    assert boxes == [tuple(b) for b in proposal.grid_box.tolist()]


def test_naive_rams_forward_computes_the_models_logits_and_boxes():
    torch.manual_seed(0)
    vit_kwargs = {"depth": 2, "embed_dim": 32, "num_heads": 2}
    model = build_model(
        "rams_trans", 4, backbone="vit_tiny_patch16_224", img_size=64, patch_size=8, drop_rate=0.0, threshold=1.0,
        vit_kwargs=vit_kwargs,
    ).eval()  # fmt: skip
    with torch.no_grad():
        for block in model.vit.blocks:
            block.attn.qkv.weight.mul_(8.0)  # peaked attention, so that the boxes are not all the whole image
        x = torch.randn(6, 3, 64, 64)
        ours, base = model(x), naive.naive_rams_forward(model, x, training=False)
    whole = torch.tensor([0.0, 0.0, 64.0, 64.0])
    assert not all(torch.equal(b, whole) for b in ours.aux["boxes"][:, 1])
    assert torch.equal(base.aux["boxes"], ours.aux["boxes"])
    torch.testing.assert_close(base.logits["scale1"], ours.logits["scale1"], atol=1e-5, rtol=1e-5)
    # Scale 2 sees the same box; F.interpolate clamps at the crop border where roi_align reads the neighbours,
    # so the logits agree closely but not exactly.
    assert (base.logits["scale2"] - ours.logits["scale2"]).abs().max() < 0.05
    np.testing.assert_allclose(base.probs.sum(1).numpy(), 1.0, atol=1e-6)
