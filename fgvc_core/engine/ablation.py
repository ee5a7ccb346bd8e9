"""Ablation grids: named variants x seeds on one base recipe, run with an equal budget, resumable run by run.

A grid file (``train/configs/ablation/<grid>.yaml``)::

    grid: cra_table3
    base: cra_smra_hard.yaml          # the recipe every variant starts from (relative to the grid file)
    budget: [train.epochs=6]          # overrides applied to every run last: the equal budget
    explain_limit: 120                # test images for the pointing game (0: none)
    variants:
      plain: [model.variant=plain]    # each variant = a list of section.key=value overrides
      cram: [model.variant=cram]

Run ``variant`` with seed ``s`` trains into ``<out>/<variant>/seed<s>`` with ``train.seed=s`` (initialisation,
batch order and augmentation; the training images, the validation stream and the test folder stay the same for
every run). It is *finished* when the folder holds ``best.safetensors`` and ``ablation_result.json`` (written last,
atomically): a finished run is skipped and never opened for writing; any other run is continued with
``run_training(resume=True)`` from its ``last.safetensors`` (a run killed mid-way loses at most the steps since its
last checkpoint). The result of a run is read from ``best``'s sidecar: the test top-1 of the checkpoint selected
on the validation split, plus the explanation metrics of ``fgvc_core.explain.scoring.evaluation`` on ``explain_limit``
test images. ``write_tables`` turns the finished runs into ``runs.csv``, ``summary.csv`` and ``results.md``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fgvc_core.errors import ConfigError, FGVCError

GRID_DIR = Path(__file__).resolve().parents[2] / "train" / "configs" / "ablation"
RESULT_FILE = "ablation_result.json"
RUN_THREADS = 1  # torch threads of every run (see run_grid)
# Keys that set a run's budget or identity: a variant may not change them, or the comparison is not equal.
BUDGET_KEYS = frozenset(
    {"train.epochs", "train.max_steps", "train.batch_size", "train.seed", "train.output", "data.train_samples",
     "data.seed", "data.val_samples", "data.val_stream_seed", "data.root", "data.test_split", "data.num_classes"}
)  # fmt: skip
GRID_KEYS = frozenset({"grid", "description", "base", "budget", "explain_limit", "variants"})
# Per-run numbers, in table order (fractions in [0, 1], except the counts and minutes).
METRICS: tuple[str, ...] = (
    "test_top1", "val_top1", "pointing_game", "pointing_centre", "crop_recall", "crop_area", "best_epoch",
    "train_minutes",
)  # fmt: skip


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Grid:
    """A parsed grid file (see the module docstring)."""

    name: str
    base: Path
    budget: tuple[str, ...]
    variants: tuple[Variant, ...]
    explain_limit: int
    description: str = ""


@dataclass(frozen=True)
class RunSpec:
    """One cell x seed of a grid: where it trains and the overrides that make its config from the base recipe."""

    variant: str
    seed: int
    folder: Path
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.variant}/seed{self.seed}"


def grid_names(grid_dir: Path = GRID_DIR) -> list[str]:
    """The named grids: files of ``grid_dir`` with a ``variants`` section (the base recipes have none)."""
    names = []
    for path in sorted(Path(grid_dir).glob("*.yaml")):
        try:
            if "variants" in (yaml.safe_load(path.read_text()) or {}):
                names.append(path.stem)
        except (OSError, yaml.YAMLError, TypeError):
            continue
    return names


def _override_key(item: str, where: str) -> str:
    key, sep, _ = str(item).partition("=")
    if not sep or not key or "." not in key:
        raise ConfigError(f"{where}: override {item!r} must look like section.key=value")
    return key


def load_grid(name_or_path: str | Path, grid_dir: Path = GRID_DIR) -> Grid:
    """Read a grid by name (``cra_table3``) or path; every problem is one ConfigError naming the file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(grid_dir) / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(grid_names(grid_dir)) or "none"
            raise ConfigError(f"unknown grid {str(name_or_path)!r}; named grids: {known} (or give a .yaml path)")
    if not path.is_file():
        raise ConfigError(f"grid file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("variants"), dict) or not raw["variants"]:
        raise ConfigError(f"{path.name} is not a grid file: it needs a non-empty 'variants' mapping")
    unknown = set(raw) - GRID_KEYS
    if unknown:
        raise ConfigError(f"{path.name}: unknown grid key(s) {', '.join(sorted(unknown))}")
    if not isinstance(raw.get("base"), str):
        raise ConfigError(f"{path.name}: 'base' must name the recipe every variant starts from")
    base = (path.parent / raw["base"]).resolve()
    if not base.is_file():
        raise ConfigError(f"{path.name}: base recipe not found: {base}")
    budget = raw.get("budget") or []
    if not isinstance(budget, list):
        raise ConfigError(f"{path.name}: 'budget' must be a list of section.key=value overrides")
    for item in budget:
        _override_key(item, path.name)
    variants = []
    for name, overrides in raw["variants"].items():
        overrides = overrides or []
        if not isinstance(overrides, list):
            raise ConfigError(f"{path.name}: variant {name!r} must be a list of section.key=value overrides")
        if not str(name) or "/" in str(name) or str(name).startswith("."):
            raise ConfigError(f"{path.name}: variant name {name!r} must be a plain folder name")
        touched = sorted(BUDGET_KEYS & {_override_key(o, f"{path.name} variant {name}") for o in overrides})
        if touched:
            raise ConfigError(
                f"{path.name}: variant {name!r} changes {', '.join(touched)}, which set the equal budget; "
                "put budget changes in 'budget'"
            )
        variants.append(Variant(str(name), tuple(str(o) for o in overrides)))
    limit = raw.get("explain_limit", 120)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError(f"{path.name}: explain_limit must be an integer >= 0, got {limit!r}")
    name = str(raw.get("grid") or path.stem)
    return Grid(name, base, tuple(str(b) for b in budget), tuple(variants), limit, str(raw.get("description", "")))


def expand(grid: Grid, seeds: Sequence[int], out: Path) -> list[RunSpec]:
    """Every (variant, seed) run in order: variants as listed, the seeds of one variant together."""
    if not seeds or len(set(seeds)) != len(seeds) or any(isinstance(s, bool) or int(s) < 0 for s in seeds):
        raise ConfigError(f"seeds must be distinct integers >= 0, got {list(seeds)}")
    runs = []
    for variant in grid.variants:
        for seed in seeds:
            folder = Path(out) / variant.name / f"seed{seed}"
            overrides = (*variant.overrides, *grid.budget, f"train.seed={seed}", f"train.output={folder}")
            runs.append(RunSpec(variant.name, int(seed), folder, overrides))
    return runs


def select_variants(runs: Sequence[RunSpec], only: Sequence[str] | None) -> list[RunSpec]:
    """The runs of the variants named in ``only`` (all when None); an unknown name is a ConfigError."""
    if not only:
        return list(runs)
    known = list(dict.fromkeys(r.variant for r in runs))
    unknown = [name for name in only if name not in known]
    if unknown:
        raise ConfigError(f"unknown variant(s) {', '.join(unknown)}; this grid has {', '.join(known)}")
    return [r for r in runs if r.variant in only]


def ensure_benchmarks(grid: Grid, runs: Sequence[RunSpec]) -> list[str]:
    """Write the held-out disk copy of the named synth setting the runs use when it is missing; log lines.

    A folder that holds something else (another setting, an unfinished copy of unknown origin) is refused rather
    than overwritten: a run's test split must be exactly the setting's.
    """
    from fgvc_core.data.synth.settings import get_setting, matches_setting, write_setting

    lines, seen = [], set()
    for run in runs:
        data = run_config(grid, run)["data"]
        setting = (data.get("options") or {}).get("setting")
        if data["name"] != "synth_stream" or setting is None or data["root"] in seen:
            continue
        seen.add(data["root"])
        root = Path(data["root"])
        wanted = get_setting(setting)
        if data["num_classes"] != wanted.num_classes:
            raise ConfigError(
                f"data.num_classes is {data['num_classes']} but setting {setting!r} has {wanted.num_classes} classes"
            )
        if matches_setting(root, setting):
            continue
        if root.exists() and any(root.iterdir()):
            raise ConfigError(
                f"{root} holds something other than the {setting!r} benchmark; move it away (train.ablate writes "
                "the setting's test data there) or point data.root elsewhere"
            )
        lines.append(f"writing the {setting!r} benchmark's held-out copy to {root} ({wanted.description})")
        write_setting(root, setting, progress=False)
    return lines


def run_config(grid: Grid, run: RunSpec) -> dict[str, Any]:
    """The full, validated training config of ``run``."""
    from fgvc_core.engine.config import load_config

    return load_config(grid.base, list(run.overrides))


def read_result(folder: Path) -> dict[str, Any] | None:
    """The recorded result of a finished run, or None (not finished, or the record is unreadable).

    The record alone marks a run finished (it is written last, atomically, after training and scoring): a run
    restored from the stash keeps only its record and logs unless its weights are still needed (``stash_files``).
    """
    try:
        record = json.loads((folder / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "test_top1" in record else None


def train_minutes(metrics_csv: Path) -> float:
    """Training wall time of a run over all its sessions, from ``metrics.csv``'s per-session clock.

    Each (re)start restarts the clock at 0, so the total is the sum of each session's last time; the steps a
    resume trained again after a kill count once (metrics.csv is cut back to the checkpoint's rows).
    """
    total, previous = 0.0, 0.0
    try:
        with open(metrics_csv, newline="") as handle:
            for row in csv.DictReader(handle):
                now = float(row["time"])
                if now < previous:
                    total += previous
                previous = now
    except (OSError, ValueError, KeyError):
        return math.nan
    return (total + previous) / 60.0


def _mean_of(report: dict[str, Any], *keys: str) -> float:
    node: Any = report
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return math.nan
        node = node[key]
    return float(node["mean"]) if isinstance(node, dict) and "mean" in node else math.nan


def _trained_steps(folder: Path, best_meta: dict[str, Any]) -> int:
    from fgvc_core.engine.checkpoint import read_meta

    try:
        return int(read_meta(folder / "last.safetensors").get("step", 0))
    except (FGVCError, OSError, ValueError):
        return int(best_meta.get("step", 0))


def result_record(run: RunSpec, best: Path, explain_limit: int) -> dict[str, Any]:
    """The numbers of a trained run: the sidecar's test/val top-1 of ``best`` and the explanation metrics."""
    from fgvc_core.data.registry import build_dataset
    from fgvc_core.engine.checkpoint import load_checkpoint, read_meta

    meta = read_meta(best)
    metrics = meta.get("metrics") or {}
    record: dict[str, Any] = {
        "variant": run.variant,
        "seed": run.seed,
        "test_top1": float(metrics.get("combined_top1", math.nan)),
        "val_top1": float((metrics.get("val") or {}).get("combined_top1", math.nan)),
        "best_epoch": int(meta.get("epoch", 0)),
        "steps": _trained_steps(run.folder, meta),  # the run's budget, not the selected checkpoint's step
        "train_minutes": train_minutes(run.folder / "metrics.csv"),
        "selection": (meta.get("selection") or {}).get("select_on"),
    }
    record.update({k: math.nan for k in ("pointing_game", "pointing_centre", "crop_recall", "crop_area")})
    if explain_limit > 0:
        from fgvc_core.explain.scoring.evaluation import evaluate_explanations

        data = meta["dataset"]
        name = "synth" if data["name"] == "synth_stream" else data["name"]
        model, _ = load_checkpoint(best)
        raw = build_dataset(name, data["root"], data["test_split"])
        report = evaluate_explanations(model, raw, meta["preprocess"], limit=explain_limit, show_progress=False)
        record["explain_images"] = report.get("images")
        record["pointing_game"] = _mean_of(report, "pointing game", "ours")
        record["pointing_centre"] = _mean_of(report, "pointing game", "centre")
        record["crop_recall"] = _mean_of(report, "dppm crop", "recall")
        record["crop_area"] = _mean_of(report, "dppm crop", "area fraction")
    return record


# What the stash keeps of a finished run: its record and logs; the selected weights only while the run's variant
# still lacks seeds (its median is not known yet, see ``ship_medians``). Unfinished runs keep the resumable set.
# Sidecar keys save_checkpoint writes itself (a shipped copy gets fresh ones).
SIDECAR_OWN_KEYS = ("format", "format_version", "code_version", "model", "weights")
FINISHED_FILES = (RESULT_FILE, "best.json", "metrics.csv", "config.yaml", "status.json")


def stash_files(run: RunSpec, runs: Sequence[RunSpec]) -> tuple[str, ...] | None:
    """The files of ``run``'s folder worth stashing (None: the resumable set of an unfinished run)."""
    if read_result(run.folder) is None:
        return None
    same = [r for r in runs if r.variant == run.variant]
    complete = all(read_result(r.folder) is not None for r in same)
    return FINISHED_FILES if complete else (*FINISHED_FILES, "best.safetensors")


def median_record(records: Sequence[dict[str, Any]], variant: str, metric: str = "test_top1") -> dict | None:
    """The run of ``variant`` with the median ``metric`` (the lower of an even count; ties by seed), or None."""
    ranked = sorted(
        (r for r in records if r["variant"] == variant and not math.isnan(float(r.get(metric, math.nan)))),
        key=lambda r: (float(r[metric]), int(r["seed"])),
    )
    return ranked[(len(ranked) - 1) // 2] if ranked else None


def ship_medians(
    runs: Sequence[RunSpec],
    target: Path,
    log: Callable[[str], None] = print,
    known: Sequence[Mapping[str, Any]] = (),
) -> list[Path]:
    """Write the median-seed checkpoint of every complete variant to ``target/<variant>/seed<s>/best.safetensors``.

    Weights go as float16 (a third of the size; the sidecar's metrics are those measured on the float32 run, and
    ``shipped_as`` says so). A variant with a missing seed, or whose median run's weights are gone, ships nothing;
    an earlier shipped seed of a variant is removed, so each variant ships exactly one.

    ``known``: records of a committed results table (``variant``, ``seed``, ``test_top1``...) for runs whose
    folders are gone (a fresh clone): the median is picked over them, and only the median run must be here, for
    instance retrained with ``--only <variant> --seeds <s>``. A run that is here and in ``known`` must agree on its
    test top-1, else the variant ships nothing (the retrained run is not the run the table reports).
    """
    import shutil

    from fgvc_core.engine.checkpoint import load_checkpoint, save_checkpoint

    table = {(str(r["variant"]), int(r["seed"])): r for r in known}
    written = []
    for variant in dict.fromkeys(r.variant for r in runs):
        same = [r for r in runs if r.variant == variant]
        here = [read_result(r.folder) for r in same]
        listed = [table.get((variant, r.seed)) for r in same]
        disagree = [
            r.seed for r, a, b in zip(same, here, listed)
            if a is not None and b is not None and abs(float(a["test_top1"]) - float(b["test_top1"])) > 1e-9
        ]  # fmt: skip
        if disagree:
            log(f"not shipped {variant}: seed(s) {disagree} here differ from the results table")
            continue
        records = [a if a is not None else b for a, b in zip(here, listed)]
        if any(rec is None for rec in records):
            continue
        median = median_record(records, variant)
        run = next((r for r in same if median is not None and r.seed == int(median["seed"])), None)
        best = run.folder / "best.safetensors" if run is not None else None
        if best is None or not best.is_file():
            log(f"not shipped {variant}: the median run's weights are not here")
            continue
        folder = Path(target) / variant
        if folder.exists():
            shutil.rmtree(folder)
        out = folder / f"seed{run.seed}" / "best.safetensors"
        out.parent.mkdir(parents=True)
        model, meta = load_checkpoint(best)
        keep = {
            k: v for k, v in meta.items() if k not in ("format", "format_version", "code_version", "model", "weights")
        }
        keep["shipped_as"] = {"dtype": "float16", "from": f"{variant}/seed{run.seed}", "metrics_measured_in": "float32",
                              "median_of_seeds": sorted(int(r["seed"]) for r in records)}  # fmt: skip
        save_checkpoint(model, out, keep, dtype="float16")
        log(f"shipped {variant}: seed {run.seed} (median test top-1 {_pct(float(median['test_top1']))} %) -> {out}")
        written.append(out)
    return written


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")
    os.replace(tmp, path)  # the record appears whole or not at all: it is the "finished" marker


def run_one(grid: Grid, run: RunSpec, explain_limit: int | None = None, threads: int | None = None) -> dict:
    """Train (or continue) one run, score its selected checkpoint and write its result record; returns it."""
    import torch

    from fgvc_core.engine.trainer import run_training

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:  # training and scoring on the same thread count
        config = run_config(grid, run)
        best = run_training(config, resume=True, show_progress=False)
        limit = grid.explain_limit if explain_limit is None else explain_limit
        record = result_record(run, best, limit)
    finally:  # an in-process run (jobs = 1) leaves the caller's thread count as it was
        torch.set_num_threads(previous)
    _write_json_atomic(run.folder / RESULT_FILE, record)
    return record


def summarize(records: Iterable[dict[str, Any]], variants: Sequence[str]) -> list[dict[str, Any]]:
    """Per variant (in grid order): the number of finished runs, and mean and sample sd of every metric.

    The sd is the sample standard deviation (n - 1); with one run it is NaN. NaN values (a metric a model does not
    have, e.g. the crop recall of CRA-SMRA) are left out of both.
    """
    by_variant: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for record in records:
        by_variant.setdefault(record["variant"], []).append(record)
    rows = []
    for variant, group in by_variant.items():
        row: dict[str, Any] = {"variant": variant, "runs": len(group), "seeds": " ".join(str(r["seed"]) for r in group)}
        for metric in METRICS:
            values = [float(r[metric]) for r in group if not math.isnan(float(r.get(metric, math.nan)))]
            row[f"{metric}_mean"] = statistics.fmean(values) if values else math.nan
            row[f"{metric}_sd"] = statistics.stdev(values) if len(values) > 1 else math.nan
        rows.append(row)
    return rows


RUN_COLUMNS = ("variant", "seed", *METRICS, "steps", "folder")
SUMMARY_COLUMNS = ("variant", "runs", "seeds", *(f"{m}_{s}" for m in METRICS for s in ("mean", "sd")))


def _csv_value(value: Any) -> Any:
    return "" if isinstance(value, float) and math.isnan(value) else value


def _pct(mean: float, sd: float = math.nan) -> str:
    if math.isnan(mean):
        return "—"
    return f"{100 * mean:.1f}" + ("" if math.isnan(sd) else f" ± {100 * sd:.1f}")


def _minutes(mean: float, sd: float = math.nan) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.1f}" + ("" if math.isnan(sd) else f" ± {sd:.1f}")


def write_tables(
    out: Path, grid: Grid, runs: Sequence[RunSpec], records: Sequence[dict[str, Any]], command: str
) -> dict[str, Path]:
    """Write ``runs.csv`` (every finished run), ``summary.csv`` (mean and sd per variant) and ``results.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders = {(r.variant, r.seed): r.folder for r in runs}
    order = {(r.variant, r.seed): i for i, r in enumerate(runs)}
    records = sorted(records, key=lambda r: order.get((r["variant"], r["seed"]), len(order)))
    paths = {"runs": out / "runs.csv", "summary": out / "summary.csv", "markdown": out / "results.md"}
    with open(paths["runs"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RUN_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            folder = folders.get((record["variant"], record["seed"]), "")
            writer.writerow({k: _csv_value(v) for k, v in {**record, "folder": str(folder)}.items()})
    summary = summarize(records, [v.name for v in grid.variants])
    with open(paths["summary"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in summary:
            writer.writerow({k: _csv_value(row[k]) for k in SUMMARY_COLUMNS})
    paths["markdown"].write_text(_markdown(grid, runs, records, summary, command))
    return paths


def _markdown(grid: Grid, runs: Sequence[RunSpec], records, summary, command: str) -> str:
    seeds = sorted({r.seed for r in runs})
    missing = [r.name for r in runs if (r.variant, r.seed) not in {(x["variant"], x["seed"]) for x in records}]
    lines = [
        f"# Ablation `{grid.name}`",
        "",
        f"Produced by `{command}`.",
        "",
        f"Base recipe `{grid.base.name}`; equal budget for every run: `{' '.join(grid.budget) or '(the recipe)'}`; "
        f"seeds {', '.join(map(str, seeds))} (`train.seed`). Top-1 is on the held-out test split, of the checkpoint "
        "selected on the validation split; the pointing game (peak of the explanation map inside a deciding part) "
        "is on the first explain_limit test images, evenly spaced, with the centre-point baseline. Values are % "
        "(mean ± sample sd over seeds).",
        "",
    ]
    if grid.description:
        lines[3:3] = [grid.description, ""]
    lines.append(
        f"{len(records)} of {len(runs)} runs finished" + (f"; not yet: {', '.join(missing)}." if missing else ".")
    )
    lines += [
        "",
        "| variant | runs | test top-1 | val top-1 | pointing game | centre baseline | DPPM crop recall | crop area | "
        "best epoch | train min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        m = {k: (row[f"{k}_mean"], row[f"{k}_sd"]) for k in METRICS}
        epoch = "—" if math.isnan(m["best_epoch"][0]) else f"{m['best_epoch'][0]:.1f}"
        lines.append(
            f"| {row['variant']} | {row['runs']} | {_pct(*m['test_top1'])} | {_pct(*m['val_top1'])} | "
            f"{_pct(*m['pointing_game'])} | {_pct(*m['pointing_centre'])} | {_pct(*m['crop_recall'])} | "
            f"{_pct(*m['crop_area'])} | {epoch} | {_minutes(*m['train_minutes'])} |"
        )
    header = "| variant | seed | test top-1 | val top-1 | pointing game | centre | DPPM crop recall | crop area | "
    lines += ["", "Every run:", "", header + "best epoch | steps | train min |", "|---" * 11 + "|"]
    for r in records:
        lines.append(
            f"| {r['variant']} | {r['seed']} | {_pct(r['test_top1'])} | {_pct(r['val_top1'])} | "
            f"{_pct(r['pointing_game'])} | {_pct(r['pointing_centre'])} | {_pct(r['crop_recall'])} | "
            f"{_pct(r['crop_area'])} | {r['best_epoch']} | {r['steps']} | {_minutes(r['train_minutes'])} |"
        )
    return "\n".join(lines) + "\n"


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_grid(
    grid: Grid,
    runs: Sequence[RunSpec],
    jobs: int = 1,
    explain_limit: int | None = None,
    log: Callable[[str], None] = print,
    on_finished: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every unfinished run of ``runs`` (``jobs`` at a time, one thread each when parallel); return all records.

    Finished runs are skipped (their folders are not touched). The first run that fails stops the grid: runs
    already started in parallel are finished, pending ones are not started, and the error is raised.
    """
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for run in runs:
        record = read_result(run.folder)
        if record is not None:
            records[run.name] = record
            log(f"skipped {run.name}: finished (test top-1 {_pct(record['test_top1'])} %)")
        else:
            todo.append(run)
    for run in todo:  # the whole grid's configs first: a typo must not surface after hours of training
        run_config(grid, run)

    def started(run: RunSpec) -> None:
        how = "resuming from last.safetensors" if (run.folder / "last.safetensors").exists() else "new"
        log(f"training {run.name} ({how}) in {run.folder}")

    def finished(run: RunSpec, record: dict[str, Any]) -> None:
        records[run.name] = record
        log(f"finished {run.name}: test top-1 {_pct(record['test_top1'])} %, {record['train_minutes']:.1f} min")
        if on_finished is not None:
            on_finished(record)

    # One torch thread per run, whatever ``jobs``: the CPU kernels' reductions depend on the thread count, so a run
    # repeats its table row only at the count it was trained with (measured: a 2-thread retrain of a 1-thread run
    # differed from step 20 and ended at 98.0 % instead of 97.2 %).
    if jobs <= 1 or len(todo) <= 1:
        for run in todo:
            started(run)
            finished(run, run_one(grid, run, explain_limit, threads=RUN_THREADS))
    else:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        context = mp.get_context("spawn")  # no forked torch thread pools
        queue, running = list(todo), {}
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init, initargs=(RUN_THREADS,)) as pool:
            while queue or running:
                while queue and len(running) < jobs:  # submit only what runs now: a failure starts nothing more
                    run = queue.pop(0)
                    started(run)
                    running[pool.submit(run_one, grid, run, explain_limit, 1)] = run
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    run = running.pop(future)
                    if future.exception() is not None:
                        queue.clear()  # the runs still in flight finish; the with-block waits for them
                        raise future.exception()
                    finished(run, future.result())
    order = {r.name: i for i, r in enumerate(runs)}
    return [records[name] for name in sorted(records, key=order.__getitem__)]
