"""Shared measurement and reporting: warm-up + interleaved repeats, min/median/max, goals, machine info, markdown.

Why interleaved rounds: this project's machines are shared, and the load drifts over a run. Timing A ten times and
then B ten times lets a drift land on one side only; running one call of each per round, in a shuffled order,
spreads it over both, so the *ratio* of medians stays fair even when the absolute times are noisy.
"""

from __future__ import annotations

import datetime as _dt
import gc
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of every timed call of one benchmark row (warm-up calls excluded)."""

    name: str
    seconds: tuple[float, ...]

    @property
    def min_ms(self) -> float:
        return 1000.0 * min(self.seconds)

    @property
    def median_ms(self) -> float:
        return 1000.0 * statistics.median(self.seconds)

    @property
    def max_ms(self) -> float:
        return 1000.0 * max(self.seconds)

    @property
    def repeats(self) -> int:
        return len(self.seconds)


def cuda_sync(device: torch.device | str | None) -> Callable[[], None]:
    """A no-op on CPU, ``torch.cuda.synchronize`` on CUDA: a timer must wait for queued kernels."""
    if device is not None and torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def measure(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] = lambda: None,
    seed: int = 0,
) -> tuple[dict[str, Timing], dict[str, Any]]:
    """Time every function ``repeats`` times after ``warmup`` untimed calls, in shuffled interleaved rounds.

    Args:
        fns: row name -> zero-argument callable.
        repeats: timed calls per function (>= 1).
        warmup: untimed calls per function first (allocator, caches, lazy imports, autotuning).
        sync: called before starting and before stopping each clock (``cuda_sync(device)`` on a GPU).
        seed: seeds the round order, so a rerun interleaves the same way.

    Returns:
        ``(timings, outputs)``: a :class:`Timing` per name and the last value each function returned (so that a
        benchmark can check that ours and the baseline computed the same thing).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(fns)
    outputs: dict[str, Any] = {}
    for _ in range(warmup):
        for name in names:
            outputs[name] = fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(seed)
    for _ in range(repeats):
        order.shuffle(names)
        for name in names:
            sync()
            start = time.perf_counter()
            outputs[name] = fns[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: Timing(name, tuple(times[name])) for name in fns}, outputs


@dataclass(frozen=True)
class Goal:
    """A target a measured value must meet: ``value <= target`` (``op="<="``) or ``value >= target``."""

    op: str
    target: float
    unit: str = "x"

    def met(self, value: float) -> bool:
        return value <= self.target if self.op == "<=" else value >= self.target

    def judge(self, value: float) -> str:
        """``"met"`` or ``"MISSED by N%"`` (how far the value is from the target, relative to the target)."""
        shown = f"{fmt(value)}{self.unit} vs goal {self.op} {fmt(self.target)}{self.unit}"
        if self.met(value):
            return f"met ({shown})"
        off = value / self.target - 1.0 if self.op == "<=" else 1.0 - value / self.target
        return f"MISSED by {100.0 * off:.0f}% ({shown})"

    def __str__(self) -> str:
        return f"{self.op} {fmt(self.target)}{self.unit}"


def fmt(value: float | None) -> str:
    """Four significant digits: enough to recompute a ratio from two printed medians to ~0.1 %."""
    if value is None:
        return "n/a"
    return f"{value:.4g}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table (cells converted with ``str``; ``|`` in a cell is escaped)."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def timing_table(timings: Sequence[Timing], descriptions: Mapping[str, str]) -> str:
    """One row per timed function: name, what it runs, min/median/max in ms and the number of repeats."""
    rows = [
        (t.name, descriptions.get(t.name, ""), fmt(t.min_ms), fmt(t.median_ms), fmt(t.max_ms), t.repeats)
        for t in timings
    ]
    return markdown_table(("row", "what", "min (ms)", "median (ms)", "max (ms)", "repeats"), rows)


# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), from the vendors' data sheets; matched as substrings of
# torch.cuda.get_device_name in this order (the more specific names first). --peak-tflops overrides.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200 NVL", 835.0),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def bf16_peak_tflops(name: str) -> float | None:
    """Dense bf16 peak of a GPU from :data:`BF16_PEAK_TFLOPS` by device-name substring, else None."""
    for key, value in BF16_PEAK_TFLOPS:
        if key in name:
            return value
    return None


def free_memory(device: torch.device) -> None:
    """Collect garbage and return cached CUDA blocks, so the next variant's peak starts from what it holds."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def peak_memory_start(device: torch.device) -> None:
    """Reset CUDA's peak-allocation counter (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    """``torch.cuda.max_memory_allocated`` since the last reset, in MiB; None on CPU (no such counter)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - a missing optional package is reported, not fatal
        return "not installed"


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[1]
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
        if sha.returncode != 0:
            return "unknown"
        return sha.stdout.strip() + (" (+ uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def device_name(device: torch.device) -> str:
    """``torch.cuda.get_device_name`` on CUDA, else ``"CPU"``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU"


def machine_info(device: torch.device | str = "cpu") -> dict[str, str]:
    """What a reader needs to reproduce or discount the numbers: hardware, load, versions, commit, date."""
    device = torch.device(device)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    info = {
        "date (UTC)": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "CPU": f"{_cpu_model()}, {os.cpu_count()} logical cores ({usable} usable), torch threads "
        f"{torch.get_num_threads()}",
        "load average (1/5/15 min) at start": load,
        "device": device_name(device),
        "versions": f"Python {platform.python_version()}, torch {torch.__version__}, torchvision "
        f"{_version('torchvision')}, timm {_version('timm')}, numpy {_version('numpy')}, scipy {_version('scipy')}",
        "commit": _git_commit(),
    }
    if device.type == "cuda":
        info["CUDA"] = f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    return info


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The exact command that reproduces this run."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "-m", module, *map(shlex.quote, args)])


def render_section(
    title: str, command: str, info: Mapping[str, str], parts: Sequence[tuple[str, str]], notes: Sequence[str]
) -> str:
    """A markdown section: the machine, the command, the tables (``(heading, table)``) and the notes."""
    lines = [f"## {title}", "", f"Command: `{command}`", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    for heading, body in parts:
        lines += ["", f"### {heading}", "", body]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_report(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` (parents created) and print it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(text)
    return path
