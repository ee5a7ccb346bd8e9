"""Interactive latency on CPU: what the app's sliders cost, each against the plain way, in one run.

``python -m benchmarks.interactive [--tiny] [--repeats 10] [--warmup 2] [--threads N] [--sections ...]
[--out benchmarks/results_interactive.md]``

Rows (one image, B = 1, random weights, eval mode; every baseline computes the same result as ours, and the
"max |Δ|" column shows that it did):
- ``cra``: CRA-SMRA ResNet50 at 448 px. Baseline: a full ``trace(x, delta=0.7)``; ours: the δ-update
  ``trace(x, delta=0.7, cache=first.cache)``, which reruns only stages 4-5. Goal: <= 0.4× the full trace.
- ``rams``: RAMS-Trans ViT-B/16 at 448 px (785 tokens), 2 scales. Baseline: a full ``trace(x, threshold=1.4)``;
  ours: ``trace(x, threshold=1.4, cache=first.cache)``. Also one scale pass alone (a ViT pass returning every head's
  attention, as the trace does) and rollout + box alone: from the head-fused maps that the scale-1 state keeps
  (what a threshold move costs), and from every head (what the first rollout of an image costs). Goals: rollout
  + box <= 30 ms; update ≈ one scale pass (we judge <= 1.2×), not two.
- ``rollout``: the row-vector chain (``attention_rollout``) vs the N×N matrix chain, 12 layers × 12 heads, B = 1,
  at 197 (224 px / 16), 785 (448 px / 16) and 1370 tokens (37×37 + 1: ViT-L/14 at 518 px), on random
  row-stochastic attentions (softmax of Gaussian logits). No goal was set; the ratio is reported.
- ``cam``: per-stage Grad-CAM of the CRA-SMRA model above: ``stage_cams`` (3 stages, one forward and one
  backward) vs 3 single-stage calls. No goal was set (ideal ≈ 1/3).

``--tiny`` shrinks every model, input and token count and uses 2 repeats, so the test suite runs it in seconds;
its numbers mean nothing and its goals are not judged.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchmarks import naive
from benchmarks._timing import (
    Goal,
    Timing,
    command_line,
    fmt,
    machine_info,
    markdown_table,
    measure,
    render_section,
    timing_table,
    write_report,
)

DELTA = 0.7
THRESHOLD = 1.4
SECTIONS = ("cra", "rams", "rollout", "cam")
CRA_GOAL = Goal("<=", 0.4)  # δ-update / full trace
UPDATE_GOAL = Goal("<=", 1.2)  # threshold update / one scale pass ("≈ one scale pass, not two")
ROLLOUT_BOX_GOAL = Goal("<=", 30.0, " ms")


@dataclass(frozen=True)
class Setup:
    """Model and problem sizes of one run (full or tiny)."""

    num_classes: int
    cra: dict[str, Any]
    cra_size: int
    rams: dict[str, Any]
    rams_size: int
    rollout_tokens: tuple[int, ...]
    rollout_layers: int
    rollout_heads: int
    repeats: int
    warmup: int
    label: str


FULL = Setup(
    num_classes=200,
    cra={"backbone": "resnet50"},
    cra_size=448,
    rams={"backbone": "vit_base_patch16_224", "img_size": 448},
    rams_size=448,
    rollout_tokens=(197, 785, 1370),
    rollout_layers=12,
    rollout_heads=12,
    repeats=10,
    warmup=2,
    label="full: CRA-SMRA ResNet50 at 448 px, RAMS-Trans ViT-B/16 at 448 px, rollout 12 layers × 12 heads",
)
TINY = Setup(
    num_classes=4,
    cra={"backbone": "resnet_tiny", "conv_channels": 32, "conv_mid_channels": 16, "head_hidden": 16},
    cra_size=64,
    rams={
        "backbone": "vit_tiny_patch16_224",
        "img_size": 32,
        "patch_size": 8,
        "drop_rate": 0.0,
        "vit_kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2},
    },
    rams_size=32,
    rollout_tokens=(17, 37, 65),
    rollout_layers=2,
    rollout_heads=2,
    repeats=2,
    warmup=1,
    label="TINY (test configuration: numbers mean nothing, goals not judged)",
)


@dataclass(frozen=True)
class Ratio:
    """``ours`` / ``baseline`` medians, with a correctness check of their outputs and an optional goal."""

    ours: str
    baseline: str
    ratio: float
    check: str
    goal: Goal | None = None


@dataclass
class Report:
    """Everything one run measured (the test reads it; ``markdown`` is what was written to ``--out``)."""

    timings: dict[str, Timing] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    ratios: list[Ratio] = field(default_factory=list)
    absolute: list[tuple[str, Goal]] = field(default_factory=list)
    markdown: str = ""

    def add(self, timings: dict[str, Timing], descriptions: dict[str, str]) -> None:
        self.timings.update(timings)
        self.descriptions.update(descriptions)

    def ratio(self, ours: str, baseline: str, check: str, goal: Goal | None = None) -> None:
        value = self.timings[ours].median_ms / self.timings[baseline].median_ms
        self.ratios.append(Ratio(ours, baseline, value, check, goal))


def _max_diff(a: Any, b: Any) -> float:
    a = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).double()
    b = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b).double()
    return float((a - b).abs().max())


def bench_cra(setup: Setup, repeats: int, warmup: int, report: Report, model: torch.nn.Module) -> None:
    """Full trace at δ = 0.7 vs the δ-update through the stage-3 cache (same input, same δ)."""
    x = torch.randn(1, 3, setup.cra_size, setup.cra_size)
    first = model.trace(x)  # what the page computed when the image arrived (default δ)
    fns = {
        "cra.full_trace": lambda: model.trace(x, delta=DELTA),
        "cra.delta_update": lambda: model.trace(x, delta=DELTA, cache=first.cache),
    }
    timings, out = measure(fns, repeats, warmup)
    report.add(
        timings,
        {
            "cra.full_trace": f"CRA-SMRA trace(x, delta={DELTA}): stages 1-5, heads, SMRAM maps",
            "cra.delta_update": f"trace(x, delta={DELTA}, cache=first.cache): stages 4-5 and heads only",
        },
    )
    diff = _max_diff(out["cra.delta_update"].probs, out["cra.full_trace"].probs)
    report.ratio("cra.delta_update", "cra.full_trace", f"max |Δ probs| {diff:.1e}", CRA_GOAL)


def bench_rams(setup: Setup, repeats: int, warmup: int, report: Report) -> None:
    """Full trace vs the threshold update reusing scale 1; one scale pass and rollout + box alone."""
    from fgvc_core import build_model
    from fgvc_core.models.rams_trans import dppm
    from fgvc_core.models.rams_trans import vit as vitlib
    from fgvc_core.ops.rollout import attention_rollout, fused_rollout

    torch.manual_seed(0)
    model = build_model("rams_trans", setup.num_classes, **setup.rams).eval()
    grid, patch, _ = vitlib.grid_geometry(model.vit)
    x = torch.randn(1, 3, setup.rams_size, setup.rams_size)
    first = model.trace(x)  # the trace made when the image arrived (default threshold)
    opts = model.options

    def one_scale_pass():
        with torch.no_grad():
            return vitlib.forward_scale(model.vit, x, model.cls_token(0), False, "heads")[0]

    def rollout_box():  # what a threshold move costs before scale 2: the state keeps the head-fused maps
        fused = first.cache.fused_attention(opts.head_fusion)
        scores = fused_rollout(fused, opts.discard_ratio, opts.query)
        return dppm.propose(scores, grid, patch, THRESHOLD).box

    def rollout_box_unfused():  # the same from every head of every layer (what a first rollout costs)
        scores = attention_rollout(first.cache.attentions, opts.head_fusion, opts.discard_ratio, opts.query)
        return dppm.propose(scores, grid, patch, THRESHOLD).box

    fns = {
        "rams.full_trace": lambda: model.trace(x, threshold=THRESHOLD),
        "rams.threshold_update": lambda: model.trace(x, threshold=THRESHOLD, cache=first.cache),
        "rams.one_scale_pass": one_scale_pass,
        "rams.rollout_box": rollout_box,
        "rams.rollout_box_unfused": rollout_box_unfused,
    }
    timings, out = measure(fns, repeats, warmup)
    report.add(
        timings,
        {
            "rams.full_trace": f"RAMS-Trans trace(x, threshold={THRESHOLD}): 2 ViT passes, rollouts, boxes, crop",
            "rams.threshold_update": f"trace(x, threshold={THRESHOLD}, cache=first.cache): rollout, box, crop, scale 2",
            "rams.one_scale_pass": "one ViT pass returning every block's attention (all heads), no grad",
            "rams.rollout_box": "fused_rollout over the scale-1 state's head-fused maps + DPPM mask/component/box",
            "rams.rollout_box_unfused": "attention_rollout over all heads of the scale-1 attention + DPPM box",
        },
    )
    full, update = out["rams.full_trace"], out["rams.threshold_update"]
    same_box = all(torch.equal(a.box, b.box) for a, b in zip(full.scales, update.scales))
    check = f"boxes equal: {same_box}, max |Δ probs| {_max_diff(full.probs, update.probs):.1e}"
    report.ratio("rams.threshold_update", "rams.full_trace", check + " (ideal ratio ≈ 0.5)")
    report.ratio("rams.threshold_update", "rams.one_scale_pass", "update ≈ one scale pass, not two", UPDATE_GOAL)
    box_diff = _max_diff(out["rams.rollout_box"], update.scales[1].box)
    report.absolute.append(("rams.rollout_box", ROLLOUT_BOX_GOAL))
    report.descriptions["rams.rollout_box"] += f" (box = the update's scale-2 box: {box_diff == 0})"


def bench_rollout(setup: Setup, repeats: int, warmup: int, report: Report) -> None:
    """Row-vector chain vs matrix chain on random row-stochastic attentions, at each token count."""
    from fgvc_core.ops.rollout import attention_rollout

    gen = torch.Generator().manual_seed(0)
    layers, heads = setup.rollout_layers, setup.rollout_heads
    for n in setup.rollout_tokens:
        logits = torch.randn(layers, 1, heads, n, n, generator=gen)
        attentions = logits.softmax(dim=-1)
        del logits
        ours, base = f"rollout.row_vector.N{n}", f"rollout.matrix_chain.N{n}"
        fns = {
            ours: lambda a=attentions: attention_rollout(a),
            base: lambda a=attentions: naive.matrix_chain_rollout(a),
        }
        timings, out = measure(fns, repeats, warmup)
        shape = f"{layers} layers × {heads} heads, N = {n}, B = 1"
        report.add(
            timings,
            {
                ours: f"attention_rollout: v ← v·Â_l, O(L·N²), {shape}",
                base: f"naive.matrix_chain_rollout: R ← Â_l·R, O(L·N³), {shape}",
            },
        )
        report.ratio(ours, base, f"max |Δ scores| {_max_diff(out[ours], out[base]):.1e}")
        del attentions, out


def bench_cam(setup: Setup, repeats: int, warmup: int, report: Report, model: torch.nn.Module) -> None:
    """``stage_cams`` for stages 3-5 in one pass vs one single-stage call per stage."""
    from fgvc_core.explain.attribution.cam import stage_cams

    x = torch.randn(1, 3, setup.cra_size, setup.cra_size)
    fns = {
        "cam.one_pass": lambda: stage_cams(model, x),
        "cam.three_passes": lambda: naive.separate_stage_cams(model, x),
    }
    timings, out = measure(fns, repeats, warmup)
    report.add(
        timings,
        {
            "cam.one_pass": "stage_cams(model, x): Grad-CAM of stages 3, 4, 5 from one forward + one backward",
            "cam.three_passes": "naive.separate_stage_cams: stage_cams(stages=(s,)) for s = 3, 4, 5",
        },
    )
    diff = max(_max_diff(out["cam.one_pass"][s], out["cam.three_passes"][s]) for s in (3, 4, 5))
    report.ratio("cam.one_pass", "cam.three_passes", f"max |Δ map| {diff:.1e} (ideal ratio ≈ 0.33)")


def _status(goal: Goal | None, value: float, tiny: bool) -> str:
    if goal is None:
        return "no goal set"
    return "not judged (tiny run)" if tiny else goal.judge(value)


def render(
    report: Report, setup: Setup, tiny: bool, command: str, repeats: int, warmup: int, info: dict[str, str]
) -> str:
    """The markdown section: machine, command, timings, ratios and absolute targets."""
    ratio_rows = [
        (r.ours, r.baseline, fmt(r.ratio), r.check, r.goal or "—", _status(r.goal, r.ratio, tiny))
        for r in report.ratios
    ]
    parts = [
        ("Timings", timing_table(list(report.timings.values()), report.descriptions)),
        (
            "Ratios (median ours / median baseline; < 1 = ours faster)",
            markdown_table(("ours", "baseline", "ratio", "same result?", "goal", "status"), ratio_rows),
        ),
    ]
    if report.absolute:
        rows = [
            (name, fmt(report.timings[name].median_ms), goal, _status(goal, report.timings[name].median_ms, tiny))
            for name, goal in report.absolute
        ]
        parts.append(("Absolute targets", markdown_table(("row", "median (ms)", "goal", "status"), rows)))
    notes = [
        f"Configuration: {setup.label}.",
        f"Protocol: {warmup} warm-up call(s) per row, then {repeats} timed calls per row in shuffled interleaved "
        "rounds (load drift hits ours and the baseline alike); one image (B = 1); random weights; eval mode; "
        "wall-clock time.perf_counter.",
        f"Overrides timed: δ = {DELTA} (default 0.9), threshold α = {THRESHOLD} (default 1.2); the first trace of "
        "each model (default options) is made before timing, as the app does when an image arrives.",
    ]
    missed = [line[-1] for line in ratio_rows if line[-1].startswith("MISSED")]
    if not tiny and missed:
        notes.append(f"{len(missed)} goal(s) missed; see the status columns.")
    return render_section("Interactive latency (CPU)", command, info, parts, notes)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models and inputs, 2 repeats (for the tests)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 10; tiny 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per row first (default 2; tiny 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to run")
    parser.add_argument("--out", default="benchmarks/results_interactive.md", help="markdown file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> Report:
    """Run the selected sections, write the markdown section to ``--out``, print it and return the report."""
    args = get_args_parser().parse_args(argv)
    setup = TINY if args.tiny else FULL
    repeats = args.repeats or setup.repeats
    warmup = setup.warmup if args.warmup is None else args.warmup
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info("cpu")  # before the run: its threads and the load average at start
    try:
        report = run(args, setup, repeats, warmup)
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process (tests): leave the setting as found
    command = command_line("benchmarks.interactive", argv)
    report.markdown = render(report, setup, args.tiny, command, repeats, warmup, info)
    write_report(args.out, report.markdown)
    return report


def run(args: argparse.Namespace, setup: Setup, repeats: int, warmup: int) -> Report:
    """Run the sections ``args.sections`` asks for, in a fixed order."""
    report = Report()
    cra_model = None
    if {"cra", "cam"} & set(args.sections):
        from fgvc_core import build_model

        torch.manual_seed(0)
        cra_model = build_model("cra_smra", setup.num_classes, **setup.cra).eval()
    for section in SECTIONS:
        if section not in args.sections:
            continue
        print(f"[benchmarks.interactive] {section} ...", file=sys.stderr, flush=True)
        if section == "cra":
            bench_cra(setup, repeats, warmup, report, cra_model)
        elif section == "rams":
            bench_rams(setup, repeats, warmup, report)
        elif section == "rollout":
            bench_rollout(setup, repeats, warmup, report)
        else:
            bench_cam(setup, repeats, warmup, report, cra_model)
    return report


if __name__ == "__main__":
    main()
