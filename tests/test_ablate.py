"""train.ablate: a tiny grid (2 variants x 2 seeds x 4 steps) end to end, its tables, skipping and resuming.

The statistics are checked against a naive re-computation from runs.csv; skipping by the run files' mtimes and the
log; resuming by killing a real sweep after its second run's first checkpoint and running it again.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fgvc_core.engine import ablation
from fgvc_core.errors import ConfigError
from tests.engine_fixtures import TINY_MODELS, write_tiny_benchmark
from train import ablate

REPO = Path(__file__).resolve().parents[1]
RUNS = ["a/seed0", "a/seed1", "b/seed0", "b/seed1"]


def _tiny_grid(root: Path, variants: dict | None = None, budget: list | None = None) -> Path:
    bench = root / "bench"
    if not bench.exists():
        write_tiny_benchmark(bench)
    recipe = {
        "model": dict(TINY_MODELS["rams_trans"]),
        "data": {"name": "synth_stream", "root": str(bench), "num_classes": 4, "train_samples": 16, "img_size": 32,
                 "seed": 1, "val_samples": 8},
        "train": {"epochs": 9, "batch_size": 8, "lr": 0.05, "workers": 0, "log_every": 1,
                  "checkpoint_every_steps": 1},
    }  # fmt: skip
    (root / "base.yaml").write_text(yaml.safe_dump(recipe))
    grid = {
        "grid": "tiny",
        "base": "base.yaml",
        "budget": budget if budget is not None else ["train.epochs=2"],  # 2 x 16 images = 4 steps of 8
        "explain_limit": 4,
        "variants": variants
        if variants is not None
        else {"a": ["model.threshold=1.0"], "b": ["model.num_scales=1", "model.scale_loss_weights=[1]"]},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def _args(grid: Path, out: Path, *extra: str) -> list[str]:
    return ["--grid", str(grid), "--seeds", "0", "1", "--out", str(out), *extra]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _num(text: str) -> float:
    return math.nan if text == "" else float(text)


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory) -> tuple[Path, Path, str]:
    """The tiny grid run once, two runs at a time (the parallel path), with the progress bar on."""
    root = tmp_path_factory.mktemp("ablate")
    grid, out = _tiny_grid(root), root / "out"
    result = subprocess.run(
        [sys.executable, "-m", "train.ablate", *_args(grid, out, "--jobs", "2")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return grid, out, result.stdout + result.stderr


def test_table_has_every_run_and_the_mean_and_sd_of_each_variant(finished_grid):
    grid, out, log = finished_grid
    assert "ablation tiny" in log  # the tqdm bar over the runs
    runs = _rows(out / "runs.csv")
    assert [f"{r['variant']}/seed{r['seed']}" for r in runs] == RUNS
    assert list(runs[0]) == list(ablation.RUN_COLUMNS)
    for r in runs:
        folder = out / r["variant"] / f"seed{r['seed']}"
        assert r["folder"] == str(folder) and (folder / "best.safetensors").is_file()
        assert r["steps"] == "4"  # the equal budget: 2 epochs of 16 images in batches of 8
        assert 0.0 <= float(r["test_top1"]) <= 1.0 and 0.0 <= float(r["pointing_centre"]) <= 1.0
    # the one-scale variant has no DPPM crop: its crop columns are empty, the two-scale one's are filled
    assert all(r["crop_recall"] == "" for r in runs if r["variant"] == "b")
    assert all(r["crop_recall"] != "" for r in runs if r["variant"] == "a")

    summary = _rows(out / "summary.csv")
    assert [s["variant"] for s in summary] == ["a", "b"] and list(summary[0]) == list(ablation.SUMMARY_COLUMNS)
    for s in summary:
        assert s["runs"] == "2" and s["seeds"] == "0 1"
        for metric in ("test_top1", "val_top1", "pointing_game", "crop_recall", "train_minutes"):
            values = [_num(r[metric]) for r in runs if r["variant"] == s["variant"]]
            values = [v for v in values if not math.isnan(v)]
            if not values:
                assert s[f"{metric}_mean"] == "" and s[f"{metric}_sd"] == ""
                continue
            mean = sum(values) / len(values)
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            assert float(s[f"{metric}_mean"]) == pytest.approx(mean, abs=1e-9)
            assert float(s[f"{metric}_sd"]) == pytest.approx(sd, abs=1e-9)

    md = (out / "results.md").read_text()
    assert f"`python -m train.ablate {' '.join(_args(grid, out, '--jobs', '2'))}`" in md
    assert "4 of 4 runs finished." in md
    a = next(s for s in summary if s["variant"] == "a")
    mean, sd = 100 * float(a["test_top1_mean"]), 100 * float(a["test_top1_sd"])
    assert f"| a | 2 | {mean:.1f} ± {sd:.1f} |" in md
    assert md.count("\n| a | ") == 3 and md.count("\n| b | ") == 3  # one summary row + two run rows each


def test_a_second_invocation_skips_finished_runs_and_touches_none_of_their_files(finished_grid, capsys):
    grid, out, _ = finished_grid
    before = {run: _mtimes(out / run) for run in RUNS}
    assert ablate.main(_args(grid, out, "--no-progress")) == 0
    log = capsys.readouterr().out
    for run in RUNS:
        assert f"skipped {run}: finished" in log
        assert _mtimes(out / run) == before[run]
    assert "training " not in log and "4 of 4 runs finished" in log


def test_a_killed_sweep_completes_only_the_missing_runs_and_resumes_the_interrupted_one(tmp_path):
    grid, out = _tiny_grid(tmp_path), tmp_path / "out"
    command = [sys.executable, "-m", "train.ablate", *_args(grid, out, "--no-progress")]
    sweep = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    interrupted = out / "a" / "seed1" / "last.json"  # the second run's first checkpoint (the sidecar is written last)
    deadline = time.monotonic() + 300
    while not interrupted.exists() and sweep.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    assert ablation.read_result(out / "a" / "seed0") is not None
    assert ablation.read_result(out / "a" / "seed1") is None and (out / "a" / "seed1" / "last.safetensors").exists()
    assert not (out / "b").exists()
    first = _mtimes(out / "a" / "seed0")

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "skipped a/seed0: finished" in again.stdout
    assert "training a/seed1 (resuming from last.safetensors)" in again.stdout
    assert "training b/seed0 (new)" in again.stdout and "training b/seed1 (new)" in again.stdout
    assert "training a/seed0" not in again.stdout
    assert _mtimes(out / "a" / "seed0") == first
    runs = _rows(out / "runs.csv")
    assert [f"{r['variant']}/seed{r['seed']}" for r in runs] == RUNS and {r["steps"] for r in runs} == {"4"}


def test_grid_errors_are_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    assert ablate.main(["--grid", "no_such_grid", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown grid 'no_such_grid'; named grids: cra_delta, cra_gamma, cra_table3, rams")
    assert err.count("\n") == 1

    unequal = _tiny_grid(tmp_path, variants={"a": [], "longer": ["train.epochs=5"]})
    assert ablate.main(_args(unequal, out)) == 2
    assert "variant 'longer' changes train.epochs, which set the equal budget" in capsys.readouterr().err

    grid = _tiny_grid(tmp_path)
    assert ablate.main(_args(grid, out, "--only", "c")) == 2
    assert capsys.readouterr().err == "error: unknown variant(s) c; this grid has a, b\n"

    typo = _tiny_grid(tmp_path, variants={"a": ["model.threshold=1.0"], "b": ["train.lrr=0.1"]})
    assert ablate.main(_args(typo, out)) == 2  # every run's config is checked before the first one trains
    assert "unknown key(s) in train: lrr" in capsys.readouterr().err
    assert not out.exists()

    with pytest.raises(SystemExit) as exc:
        ablate.main(["--grid", str(grid), "--seeds", "-1"])
    assert exc.value.code == 2


def test_named_grids_expand_to_valid_configs_with_an_equal_budget(tmp_path):
    for name in ablation.grid_names():
        grid = ablation.load_grid(name)
        runs = ablation.expand(grid, [0, 1, 2], tmp_path / name)
        assert len(runs) == 3 * len(grid.variants)
        configs = [ablation.run_config(grid, run) for run in runs]
        budgets = {(c["train"]["epochs"], c["train"]["batch_size"], c["data"]["train_samples"]) for c in configs}
        assert len(budgets) == 1, name
        assert [c["train"]["seed"] for c in configs[:3]] == [0, 1, 2]
        assert {c["data"]["seed"] for c in configs} == {0}  # the same training images for every run
    table3 = ablation.load_grid("cra_table3")
    assert [v.name for v in table3.variants] == ["plain", "base", "cbam_full", "cbam", "cram", "cram_smram"]
    with pytest.raises(ConfigError, match="seeds must be distinct"):
        ablation.expand(table3, [0, 0], tmp_path)


def test_summary_of_a_single_run_has_no_sd():
    records = [{"variant": "a", "seed": 0, **{m: 0.5 for m in ablation.METRICS}}]
    (row,) = ablation.summarize(records, ["a"])
    assert row["test_top1_mean"] == 0.5 and math.isnan(row["test_top1_sd"]) and row["runs"] == 1


def test_the_hard_setting_is_selected_by_name_and_the_demo_setting_is_the_default():
    from fgvc_core.data.synth import SynthStream
    from fgvc_core.data.synth.item import render_item
    from fgvc_core.data.synth.render import DEFAULT_OPTIONS
    from fgvc_core.data.synth.settings import SETTINGS, get_setting

    assert SETTINGS["demo"].options == DEFAULT_OPTIONS and SETTINGS["demo"].num_classes == 12
    hard = get_setting("hard")
    assert hard.options != DEFAULT_OPTIONS and hard.num_classes > 12 and hard.size < 224
    stream = SynthStream(4, num_classes=hard.num_classes, size=hard.size, seed=3, setting="hard")
    image, _ = stream.render(2)
    expected, _ = render_item(3, 2, hard.num_classes, hard.size, hard.options)
    assert (image == expected).all()
    default, _ = render_item(3, 2, hard.num_classes, hard.size, DEFAULT_OPTIONS)
    assert (image != default).any()
    with pytest.raises(ConfigError, match="unknown synth setting 'harder'; choose one of demo, hard"):
        SynthStream(4, setting="harder")
    with pytest.raises(ConfigError, match="not both"):
        SynthStream(4, options=hard.options, setting="hard")


def test_the_settings_held_out_copy_is_written_once_and_a_foreign_folder_is_refused(tmp_path, monkeypatch):
    from fgvc_core.data.synth import settings

    tiny = settings.BenchmarkSetting(settings.SETTINGS["hard"].options, 4, 32, 2, "tiny")
    monkeypatch.setitem(settings.SETTINGS, "tiny", tiny)
    grid_file = _tiny_grid(tmp_path, variants={"a": []})
    recipe = yaml.safe_load((tmp_path / "base.yaml").read_text())
    recipe["data"].update(root=str(tmp_path / "tiny_bench"), options={"setting": "tiny"})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(recipe))
    grid = ablation.load_grid(grid_file)
    runs = ablation.expand(grid, [0, 1], tmp_path / "out")
    (line,) = ablation.ensure_benchmarks(grid, runs)
    assert line.startswith(f"writing the 'tiny' benchmark's held-out copy to {tmp_path / 'tiny_bench'}")
    assert settings.matches_setting(tmp_path / "tiny_bench", "tiny")
    assert ablation.ensure_benchmarks(grid, runs) == []  # already there: nothing rewritten
    monkeypatch.setitem(settings.SETTINGS, "tiny", tiny.__class__(tiny.options, 4, 32, 3, "tiny, 3 per class"))
    with pytest.raises(ConfigError, match="holds something other than the 'tiny' benchmark; move it away"):
        ablation.ensure_benchmarks(grid, runs)


def test_a_stashed_run_is_restored_into_a_fresh_out_folder_and_not_retrained(tmp_path, capsys):
    grid, out, stash = _tiny_grid(tmp_path), tmp_path / "out", tmp_path / "stash"
    args = ["--grid", str(grid), "--seeds", "0", "1", "--only", "a", "--out", str(out), "--stash-dir", str(stash)]
    assert ablate.main([*args, "--seeds", "0", "--no-progress"]) == 0  # seed 1 of variant a not run yet
    (first,) = _rows(out / "runs.csv")
    assert ablate.main([*args, "--stash"]) == 0
    assert "stashed a/seed0: ablation_result.json" in capsys.readouterr().out
    kept = sorted(p.name for p in (stash / "a" / "seed0").iterdir())
    # finished, but its variant lacks a seed: the record, the logs and the selected weights (the median is unknown)
    assert kept == sorted([*ablation.FINISHED_FILES, "best.safetensors"])
    shutil.rmtree(out)  # a fresh clone: only the committed stash is left

    assert ablate.main([*args, "--seeds", "0", "--no-progress"]) == 0
    log = capsys.readouterr().out
    assert f"restoring the stashed run a/seed0 from {stash / 'a' / 'seed0'}" in log
    assert "skipped a/seed0: finished" in log and "training a/seed0" not in log
    (again,) = _rows(out / "runs.csv")
    assert again == first  # the finished run's numbers come back unchanged, without training or scoring again

    assert ablate.main([*args, "--no-progress"]) == 0  # seed 1 trains; the variant is complete
    assert ablate.main([*args, "--stash"]) == 0
    for seed in (0, 1):  # a complete variant stashes no weights: its median ships instead (--ship)
        assert sorted(p.name for p in (stash / "a" / f"seed{seed}").iterdir()) == sorted(ablation.FINISHED_FILES)


def test_ship_writes_the_median_seed_of_each_complete_variant_in_float16(finished_grid, tmp_path):
    import fgvc_core
    from fgvc_core.engine.checkpoint import read_meta, read_weights

    grid, out, _ = finished_grid
    ship = tmp_path / "ship"
    assert ablate.main([*_args(grid, out), "--ship", "--ship-dir", str(ship)]) == 0
    rows = _rows(out / "runs.csv")
    for variant in ("a", "b"):
        ranked = sorted(
            (r for r in rows if r["variant"] == variant), key=lambda r: (float(r["test_top1"]), int(r["seed"]))
        )
        median = ranked[(len(ranked) - 1) // 2]  # the lower middle of two
        (shipped,) = (ship / variant).iterdir()
        assert shipped.name == f"seed{median['seed']}"
        weights = read_weights(shipped / "best.safetensors")
        assert {t.dtype for t in weights.values() if t.is_floating_point()} == {__import__("torch").float16}
        meta = read_meta(shipped / "best.safetensors")
        assert meta["shipped_as"]["median_of_seeds"] == [0, 1]
        assert meta["metrics"]["combined_top1"] == pytest.approx(float(median["test_top1"]))
        model, _ = fgvc_core.load_checkpoint(shipped / "best.safetensors")  # opens like any checkpoint
        assert model.num_classes == 4


def test_ship_from_a_committed_table_needs_only_the_median_run_and_refuses_a_disagreeing_one(finished_grid, tmp_path):
    grid, out, _ = finished_grid
    clone = tmp_path / "out"  # a fresh clone: the table is committed, only the median runs were retrained
    shutil.copytree(out, clone)
    tables = tmp_path / "tables"
    tables.mkdir()
    rows = _rows(out / "runs.csv")
    medians = {}
    for variant in ("a", "b"):
        ranked = sorted(
            (r for r in rows if r["variant"] == variant), key=lambda r: (float(r["test_top1"]), int(r["seed"]))
        )
        medians[variant] = ranked[0]  # the lower middle of two
        shutil.rmtree(clone / variant / f"seed{ranked[1]['seed']}")
    shutil.copyfile(out / "runs.csv", tables / f"{yaml.safe_load(grid.read_text())['grid']}_runs.csv")
    ship = tmp_path / "ship"
    args = ["--grid", str(grid), "--seeds", "0", "1", "--out", str(clone), "--table-dir", str(tables)]
    assert ablate.main([*args, "--ship", "--ship-dir", str(ship)]) == 0
    assert sorted(p.name for p in (ship / "a").iterdir()) == [f"seed{medians['a']['seed']}"]
    assert sorted(p.name for p in (ship / "b").iterdir()) == [f"seed{medians['b']['seed']}"]
    # The table says another number for a's median run than its folder: a ships nothing, b still ships.
    table = tables / f"{yaml.safe_load(grid.read_text())['grid']}_runs.csv"
    assert table.read_text().splitlines()[0].split(",")[:3] == ["variant", "seed", "test_top1"]
    lines = table.read_text().splitlines()
    for i, line in enumerate(lines):
        cells = line.split(",")
        if cells[:2] == ["a", medians["a"]["seed"]]:
            cells[2] = "0.0123"
            lines[i] = ",".join(cells)
    table.write_text("\n".join(lines) + "\n")
    other = tmp_path / "ship2"
    assert ablate.main([*args, "--ship", "--ship-dir", str(other)]) == 0
    assert not (other / "a").exists() and (other / "b").is_dir()


def test_claims_are_written_from_the_table_folder(tmp_path, capsys):
    tables = tmp_path / "tables"
    tables.mkdir()
    header = "variant,seed,test_top1\n"
    rows = "".join(f"{v},{s},{a}\n" for v, vals in {"base": (0.70, 0.72, 0.71), "cram": (0.80, 0.81, 0.83)}.items()
                   for s, a in enumerate(vals))  # fmt: skip
    (tables / "cra_table3_runs.csv").write_text(header + rows)
    assert ablate.main(["--claims", "--table-dir", str(tables)]) == 0
    text = (tables / "claims.md").read_text()
    (row,) = [line for line in text.splitlines() if "CRAM beats the multi-stage baseline" in line]
    assert "**reproduced**" in row and "+10.3" in row
    (gamma,) = [line for line in text.splitlines() if "γ = 1 is best" in line]
    assert "**not measured**" in gamma  # no cra_gamma table


def test_the_cli_lists_the_named_grids_without_importing_torch_for_help():
    listed = subprocess.run([sys.executable, "-m", "train.ablate", "--list"], cwd=REPO, capture_output=True, text=True)
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[2] == "cra_table3: plain, base, cbam_full, cbam, cram, cram_smram"
    code = "import sys, train.ablate; print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"


def test_an_in_process_run_trains_on_one_thread_and_restores_the_callers_count(tmp_path, monkeypatch):
    """--jobs 1 must train like a --jobs 2 worker (one thread): the CPU kernels' numbers depend on the count."""
    import torch

    from fgvc_core.engine import trainer

    seen = []
    real = trainer.run_training

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "run_training", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grid, out = _tiny_grid(tmp_path, variants={"a": []}), tmp_path / "out"
        assert ablate.main(["--grid", str(grid), "--seeds", "0", "--out", str(out), "--no-progress"]) == 0
        assert seen == [ablation.RUN_THREADS] == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
