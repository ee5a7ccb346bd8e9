"""Training throughput, peak memory and MFU: our training step vs a naive step, same process, same batch.

``python -m benchmarks.train_throughput [--tiny] [--steps N] [--warmup N] [--compile/--no-compile]
[--models rams_trans cra_smra] [--peak-tflops T] [--out benchmarks/results_train_throughput.md]``

Workloads (random weights, one fixed random batch on the device, both variants start from the same weights):
- RAMS-Trans ViT-B/16 at 448 px, 2 scales, batch 16, SGD lr 0.03 momentum 0.9, grad clip 1.0 (official recipe);
- CRA-SMRA ResNet50 at 448 px, ``cram_smram``, batch 20, SGD momentum 0.9, wd 1e-5, lr 2e-4 / 6e-3 (paper).

Variants:
- naive (``benchmarks/naive.py``): fp32, eager; RAMS-Trans with explicit attention whose probabilities stay in the
  graph in every block of every scale, matrix-chain rollout, per-image scipy connected components after a
  device->host copy, per-image ``F.interpolate`` crops; CRA-SMRA contiguous (NCHW); SGD without foreach/fusion.
- ours: the project's own step, ``fgvc_core.engine.loop.train_one_epoch`` with ``build_optimizer`` (fused SGD on
  CUDA): bf16 autocast on CUDA, fused SDPA on the gradient path with no-grad head-fused probabilities for the
  DPPM only, batched torch connected components and ``roi_align`` crops, channels_last for the CNN,
  ``torch.compile`` (``--compile``, on by default on CUDA, off with ``--tiny``), ``cudnn.benchmark``.

Without CUDA this runs the tiny configuration on the CPU and says so: autocast, fused SGD and compile are CUDA
features here, so the CPU ratios say nothing about GPU training. Peak memory is ``torch.cuda.max_memory_allocated``
over the timed steps (weights, gradients, optimizer state and activations); it is not measured on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmarks import naive
from benchmarks._timing import (
    Goal,
    Timing,
    bf16_peak_tflops,
    command_line,
    cuda_sync,
    device_name,
    fmt,
    free_memory,
    machine_info,
    markdown_table,
    peak_memory_mib,
    peak_memory_start,
    render_section,
    write_report,
)

MODELS = ("rams_trans", "cra_smra")
MFU_GOAL = Goal(">=", 0.40)
CPU_LABEL = (
    "CPU run (no CUDA device): tiny models, no bf16 autocast, no fused SGD, no compile, so these ratios say nothing "
    "about GPU training"
)


@dataclass(frozen=True)
class Workload:
    """One model's benchmark: build options, batch, recipe and goals."""

    model: str
    num_classes: int
    options: dict[str, Any]
    img_size: int
    batch: int
    train_cfg: dict[str, Any]  # what engine.optim.build_optimizer reads
    grad_clip: float
    speed_goal: Goal  # ours img/s / naive img/s
    memory_goal: Goal | None  # ours peak / naive peak
    mfu_goal: Goal | None
    channels_last: bool  # ours only


_RAMS_CFG = {"optimizer": "sgd", "lr": 0.03, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False}
_CRA_CFG = {
    "optimizer": "sgd",
    "lr": {"backbone": 2e-4, "new": 6e-3},
    "momentum": 0.9,
    "weight_decay": 1e-5,
    "nesterov": False,
}
FULL = {
    "rams_trans": Workload(
        "rams_trans", 200, {"backbone": "vit_base_patch16_224", "img_size": 448, "num_scales": 2}, 448, 16,
        _RAMS_CFG, 1.0, Goal(">=", 3.0), Goal("<=", 0.5), MFU_GOAL, False,
    ),
    "cra_smra": Workload(
        "cra_smra", 200, {"backbone": "resnet50"}, 448, 20, _CRA_CFG, 0.0, Goal(">=", 2.5), None, None, True
    ),
}  # fmt: skip
TINY = {
    "rams_trans": Workload(
        "rams_trans", 4,
        {"backbone": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8, "drop_rate": 0.0,
         "vit_kwargs": {"depth": 2, "embed_dim": 32, "num_heads": 2}},
        32, 4, _RAMS_CFG, 1.0, Goal(">=", 3.0), Goal("<=", 0.5), MFU_GOAL, False,
    ),
    "cra_smra": Workload(
        "cra_smra", 4, {"backbone": "resnet_tiny", "conv_channels": 32, "conv_mid_channels": 16, "head_hidden": 16},
        64, 4, _CRA_CFG, 0.0, Goal(">=", 2.5), None, None, True,
    ),
}  # fmt: skip


@dataclass
class VariantResult:
    """One variant of one workload: per-step times, throughput, peak memory, FLOP rate and its first loss."""

    model: str
    variant: str  # "naive" or "ours"
    batch: int
    timing: Timing
    peak_mib: float | None
    first_loss: float
    flops_per_step: float
    notes: list[str] = field(default_factory=list)

    @property
    def img_per_s(self) -> float:
        return self.batch / (self.timing.median_ms / 1000.0)

    @property
    def tflops(self) -> float:
        return self.flops_per_step / (self.timing.median_ms / 1000.0) / 1e12


@dataclass
class Report:
    """What one run measured; ``markdown`` is what was written to ``--out``."""

    device: str
    peak_tflops: float | None
    results: dict[tuple[str, str], VariantResult] = field(default_factory=dict)
    markdown: str = ""


def count_flops(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, device: torch.device) -> float:
    """FLOPs of one training forward + backward (matmuls, convs, attention) with ``FlopCounterMode``, on a copy.

    Counted on our eager step, so the DPPM's no-grad attention probabilities (real work of the method) are in;
    the naive step is credited with the same model FLOPs (its extra matrix-chain rollout is overhead, not model
    work). The optimizer's elementwise update is not a matmul and not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from fgvc_core.engine.loop import autocast

    model = copy.deepcopy(model).to(device).train()
    with FlopCounterMode(display=False) as counter:
        with autocast(device, "auto"):
            loss, _ = model.loss(model(images), targets)
        loss.backward()
    total = float(counter.get_total_flops())
    del model, loss
    free_memory(device)
    return total


def run_naive(work: Workload, base: torch.nn.Module, images, targets, device, steps: int, warmup: int):
    """The naive step ``warmup + steps`` times; returns (per-step seconds, first loss, peak MiB, notes)."""
    from fgvc_core.engine.optim import named_parameter_groups, resolve_group_lrs

    model = copy.deepcopy(base).to(device).train()
    groups = named_parameter_groups(model)
    lrs = resolve_group_lrs(list(groups), work.train_cfg["lr"])
    opt = naive.naive_optimizer(groups, lrs, work.train_cfg["momentum"], work.train_cfg["weight_decay"])
    if work.model == "rams_trans":
        forward = lambda x: naive.naive_rams_forward(model, x, training=True)  # noqa: E731
    else:
        forward = model
    sync = cuda_sync(device)

    def step() -> float:
        return naive.naive_train_step(forward, model.loss, opt, images, targets, work.grad_clip)

    first = step()
    for _ in range(warmup - 1):
        step()
    peak_memory_start(device)
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return tuple(times), first, peak_memory_mib(device), []


def run_ours(work: Workload, base, images, targets, device, steps: int, warmup: int, compile_model: bool):
    """Our step through the engine's ``train_one_epoch``; per-step times come from its ``on_step`` callback."""
    from fgvc_core.engine.loop import TrainState, train_one_epoch
    from fgvc_core.engine.optim import build_optimizer
    from fgvc_core.engine.schedule import build_scheduler

    notes: list[str] = []
    model = copy.deepcopy(base).to(device)
    if work.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, work.train_cfg)
    scheduler = build_scheduler(optimizer, warmup + steps + 1)
    net = torch.compile(model) if compile_model else model
    state = TrainState()
    sync = cuda_sync(device)
    stamps: list[float] = []

    def on_step(_: TrainState) -> None:
        sync()
        stamps.append(time.perf_counter())

    def epoch(count: int) -> float:
        return train_one_epoch(
            net, [(images, targets)] * count, optimizer, scheduler, state, device=device,
            total_steps=warmup + steps + 1, amp="auto", grad_clip=work.grad_clip, log_every=10**9,
            on_step=on_step, show_progress=False, channels_last=work.channels_last,
        )["loss"]  # fmt: skip

    try:
        first = epoch(1)
    except Exception as exc:  # noqa: BLE001 - a compile failure is reported, and eager is measured instead
        if not compile_model:
            raise
        notes.append(f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); ran eager")
        net = model
        first = epoch(1)
    if warmup > 1:
        epoch(warmup - 1)
    peak_memory_start(device)
    stamps.clear()
    sync()
    stamps.append(time.perf_counter())
    epoch(steps)
    peak = peak_memory_mib(device)
    return tuple(b - a for a, b in zip(stamps, stamps[1:])), first, peak, notes


def run_workload(work: Workload, device: torch.device, steps: int, warmup: int, compile_model: bool, report: Report):
    """Build the model once, then measure the naive and our step from the same weights on the same batch."""
    from fgvc_core import build_model

    torch.manual_seed(0)
    base = build_model(work.model, work.num_classes, **work.options)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(work.batch, 3, work.img_size, work.img_size, generator=gen).to(device)
    targets = torch.randint(0, base.num_classes, (work.batch,), generator=gen).to(device)
    flops = count_flops(base, images, targets, device)
    benchmark = torch.backends.cudnn.benchmark
    for variant in ("naive", "ours"):
        print(f"[benchmarks.train_throughput] {work.model} {variant} ...", file=sys.stderr, flush=True)
        torch.manual_seed(1)  # the same dropout stream for both variants
        if variant == "naive":
            times, first, peak, notes = run_naive(work, base, images, targets, device, steps, warmup)
        else:
            torch.backends.cudnn.benchmark = True  # ours picks the fastest conv algorithms for this fixed shape
            try:
                times, first, peak, notes = run_ours(work, base, images, targets, device, steps, warmup, compile_model)
            finally:
                torch.backends.cudnn.benchmark = benchmark
        free_memory(device)  # the variant's model and optimizer are gone: the next one starts from an empty cache
        timing = Timing(f"{work.model}.{variant}", times)
        report.results[(work.model, variant)] = VariantResult(
            work.model, variant, work.batch, timing, peak, first, flops, notes
        )


def _ratio_row(work: Workload, report: Report, judge: bool) -> tuple:
    naive_r, ours = report.results[(work.model, "naive")], report.results[(work.model, "ours")]
    speed = ours.img_per_s / naive_r.img_per_s
    memory = None if ours.peak_mib is None else ours.peak_mib / naive_r.peak_mib
    mfu = None if report.peak_tflops is None else ours.tflops / report.peak_tflops

    def status(goal: Goal | None, value: float | None) -> str:
        if goal is None:
            return "no goal set"
        if value is None:
            return "not measured"
        return goal.judge(value) if judge else "not judged (tiny/CPU run)"

    return (
        work.model,
        fmt(speed),
        status(work.speed_goal, speed),
        fmt(memory),
        status(work.memory_goal, memory),
        "n/a" if mfu is None else f"{100 * mfu:.1f}%",
        status(work.mfu_goal, mfu),
    )


def render(report: Report, works: Sequence[Workload], args, command: str, info: dict[str, str], judge: bool) -> str:
    """The markdown section: machine, command, per-variant table, ratio table and notes."""
    rows = []
    for work in works:
        for variant in ("naive", "ours"):
            r = report.results[(work.model, variant)]
            t = r.timing
            mfu = "n/a" if report.peak_tflops is None else f"{100 * r.tflops / report.peak_tflops:.1f}%"
            rows.append((
                work.model, variant, r.batch, fmt(t.min_ms), fmt(t.median_ms), fmt(t.max_ms), t.repeats,
                fmt(r.img_per_s), fmt(r.peak_mib), fmt(r.flops_per_step / 1e9), fmt(r.tflops), mfu,
                f"{r.first_loss:.4f}",
            ))  # fmt: skip
    headers = (
        "model", "variant", "batch", "step min (ms)", "step median (ms)", "step max (ms)", "steps", "img/s",
        "peak memory (MiB)", "model GFLOP/step", "model TFLOP/s", "MFU (bf16)", "first-step loss",
    )  # fmt: skip
    ratio_headers = (
        "model", "img/s ours / naive", "speed goal", "peak memory ours / naive", "memory goal", "MFU (ours)",
        "MFU goal",
    )  # fmt: skip
    ratio_rows = [_ratio_row(work, report, judge) for work in works]
    parts = [
        ("Per variant (img/s = batch / median step time)", markdown_table(headers, rows)),
        ("Ratios and goals", markdown_table(ratio_headers, ratio_rows)),
    ]
    peak = (
        f"{fmt(report.peak_tflops)} TFLOP/s" if report.peak_tflops else "none known for this device (use --peak-tflops)"
    )
    size = "TINY (numbers mean nothing; goals not judged)" if args.tiny else "full"
    where = "CUDA run" if report.device != "CPU" else CPU_LABEL
    notes = [
        f"Configuration: {size}; {where}.",
        f"Protocol: {args.warmup_used} warm-up step(s), then {args.steps_used} timed steps per variant, each "
        "synchronised (both loops read the loss every step anyway); naive first, then ours, in one process on one "
        "batch; both start from the same weights (compare their first-step losses).",
        f"bf16 dense peak used for MFU: {peak}. Model FLOPs per step are counted once with "
        "torch.utils.flop_counter.FlopCounterMode on our eager forward + backward (DPPM's no-grad attention included).",
        "Peak memory: torch.cuda.max_memory_allocated over the timed steps, one variant at a time (the other "
        "freed), so it includes weights, gradients, optimizer state and activations."
        if report.device != "CPU"
        else "Peak memory: not measured on the CPU (torch's CPU allocator has no peak counter; psutil is not a "
        "dependency).",
        f"torch.compile for ours: {'on' if args.compile_used else 'off'}. DataLoader workers are not exercised: "
        "the same device-resident batch is fed to every step, to time the step itself.",
    ]
    for work in works:
        for variant in ("naive", "ours"):
            notes += [f"{work.model} {variant}: {n}" for n in report.results[(work.model, variant)].notes]
    missed = [c for row in ratio_rows for c in row if str(c).startswith("MISSED")]
    if missed:
        notes.append(f"{len(missed)} goal(s) missed: " + "; ".join(missed) + ".")
    title = f"Training throughput ({report.device})"
    return render_section(title, command, info, parts, notes)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models and batches (the test; also forced on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 20; tiny 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; tiny 1)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile our model (default: on with CUDA, off with --tiny or on CPU)")  # fmt: skip
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak (default: by device name)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", default="benchmarks/results_train_throughput.md", help="markdown file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> Report:
    """Measure the selected workloads, write the markdown section to ``--out``, print it and return the report."""
    args = get_args_parser().parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.tiny = args.tiny or device.type != "cuda"  # no CUDA: the clearly labelled tiny CPU run
    args.steps_used = args.steps or (2 if args.tiny else 20)
    args.warmup_used = args.warmup if args.warmup is not None else (1 if args.tiny else 5)
    args.warmup_used = max(1, args.warmup_used)  # the first step is always untimed (it records the first loss)
    args.compile_used = (not args.tiny and device.type == "cuda") if args.compile is None else args.compile
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info(device)
    name = device_name(device)
    peak = args.peak_tflops or (bf16_peak_tflops(name) if device.type == "cuda" else None)
    report = Report(device=name, peak_tflops=peak)
    works = [(TINY if args.tiny else FULL)[m] for m in args.models]
    try:
        for work in works:
            run_workload(work, device, args.steps_used, args.warmup_used, args.compile_used, report)
    finally:
        torch.set_num_threads(threads)
    judge = not args.tiny
    report.markdown = render(report, works, args, command_line("benchmarks.train_throughput", argv), info, judge)
    write_report(args.out, report.markdown)
    return report


if __name__ == "__main__":
    main()
