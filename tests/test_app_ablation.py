"""Issue 12's app parts: the Tune page's retrained γ/δ error bars and the Compare variants page, on fixture grids.

The fixture grids are hand-written ``runs.csv`` files in train.ablate's format (plus tiny checkpoints in their
``<variant>/seed<s>/`` folders); every number the page shows is checked against a naive recomputation here.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import fgvc_core
from fgvc_core.app import ablation_tables
from fgvc_core.app.map_panels import peak_words
from fgvc_core.app.settings import app_paths
from fgvc_core.engine.ablation import RUN_COLUMNS
from fgvc_core.explain.attribution.cam import stage_cams
from fgvc_core.explain.scoring.map_readout import peak_readout
from tests.app_fixtures import (
    CRA_SIZE,
    NUM_CLASSES,
    RAMS_SIZE,
    _meta,
    environment,
    sample_box,
    tiny_cra,
    write_app_env,
)
from tests.engine_fixtures import TINY_MODELS

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120
# γ grid: value -> {seed: (test_top1, pointing_game)}; gamma1 is listed first to check the sort by value.
GAMMA_RUNS = {
    "gamma1": {0: (0.61, 0.40), 1: (0.55, 0.35), 2: (0.70, 0.52)},
    "gamma0": {0: (0.42, 0.30), 1: (0.50, 0.33), 2: (0.47, 0.20)},
    "gamma2": {0: (0.58, 0.41), 1: (0.66, 0.44), 2: (0.52, 0.38)},
    "custom": {0: (0.99, 0.99)},  # not gamma<value>: left out of the chart
}
# cra_table3 grid: the median seed by test top-1 is 2, 0 and 1 for base, cram and cram_smram.
TABLE3_TOP1 = {"base": (0.50, 0.30, 0.40), "cram": (0.45, 0.20, 0.60), "cram_smram": (0.10, 0.35, 0.90)}
TABLE3_MEDIAN = {"base": 2, "cram": 0, "cram_smram": 1}


def write_runs_csv(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "runs.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RUN_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in RUN_COLUMNS})
    return path


def gamma_rows() -> list[dict]:
    return [
        {"variant": v, "seed": s, "test_top1": t, "pointing_game": p, "pointing_centre": 0.25, "steps": 1000}
        for v, seeds in GAMMA_RUNS.items()
        for s, (t, p) in seeds.items()
    ]


def tiny_rams(num_scales: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    options = {k: v for k, v in TINY_MODELS["rams_trans"].items() if k != "name"}
    weights = [1.0] * num_scales
    return fgvc_core.build_model(
        "rams_trans", NUM_CLASSES, num_scales=num_scales, scale_loss_weights=weights, **options
    ).eval()


def write_grids(runs_root: Path, bench: Path) -> None:
    classes = fgvc_core.build_dataset("synth", bench, "test").classes
    write_runs_csv(runs_root / "ablate" / "cra_gamma", gamma_rows())
    folder = runs_root / "ablate" / "cra_table3"
    rows = []
    for v, (variant, top1) in enumerate(TABLE3_TOP1.items()):
        for seed, acc in enumerate(top1):
            rows.append({"variant": variant, "seed": seed, "test_top1": acc})
            model = tiny_cra(10 * v + seed, variant=variant)
            meta = _meta(classes, CRA_SIZE, bench, {"combined_top1": acc})
            fgvc_core.save_checkpoint(model, folder / variant / f"seed{seed}" / "best.safetensors", meta)
    write_runs_csv(folder, rows)
    folder = runs_root / "ablate" / "rams"
    for variant, scales in (("one_scale", 1), ("two_scales", 2)):
        meta = _meta(classes, RAMS_SIZE, bench, {"combined_top1": 0.5})
        fgvc_core.save_checkpoint(tiny_rams(scales, scales), folder / variant / "seed0" / "best.safetensors", meta)
    write_runs_csv(folder, [{"variant": "one_scale", "seed": 0, "test_top1": 0.4},
                            {"variant": "two_scales", "seed": 0, "test_top1": 0.5}])  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation_app")
    variables = write_app_env(root)
    variables["FGVC_RUNS_ROOT"] = str(root / "runs_root")
    variables["FGVC_ABLATION_TABLES"] = str(root / "tables")  # empty: only the runs root's grids count
    write_grids(root / "runs_root", Path(variables["FGVC_DATA_ROOT"]))
    with environment(variables):
        yield {"root": root, **variables}


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


# --------------------------------------------------------------------------------------- Tune: error bars
def test_gamma_error_bars_are_the_naive_mean_and_sd_of_the_runs_and_say_the_seed_count(env):
    at = open_page("tune")
    assert errors(at) == []
    assert at.multiselect(key="gamma_grid_metrics").value == ["test_top1", "pointing_game", "pointing_centre"]
    figure = next(f for f in charts(at) if "cra_gamma" in f["layout"]["title"]["text"])
    assert figure["layout"]["title"]["text"] == "cra_gamma: metrics vs γ: mean ± sd over 3 seeds per point"
    by_name = {trace["name"]: trace for trace in figure["data"]}
    gammas = ["gamma0", "gamma1", "gamma2"]
    for column, label in ((0, "test top-1"), (1, "pointing game")):
        trace = by_name[f"{label} (mean ± sd)"]
        runs = [[GAMMA_RUNS[g][s][column] for s in (0, 1, 2)] for g in gammas]
        assert trace["x"] == [0.0, 1.0, 2.0]
        assert trace["y"] == pytest.approx([sum(r) / len(r) for r in runs])
        naive_sd = [math.sqrt(sum((x - sum(r) / 3) ** 2 for x in r) / 2) for r in runs]
        assert trace["error_y"]["array"] == pytest.approx(naive_sd)
        assert trace["text"] == ["n = 3"] * 3
        seeds = by_name[f"{label}: each seed"]
        assert sorted(seeds["y"]) == pytest.approx(sorted(x for r in runs for x in r))
    table = at.dataframe[0].value
    assert list(table["γ"]) == [0.0, 1.0, 2.0] and list(table["runs"]) == [3, 3, 3]
    assert list(table["seeds"]) == ["0 1 2"] * 3
    assert any("Variants not named gamma<value>, left out: custom." in c.value for c in at.caption)


def test_a_value_with_one_seed_gets_no_bar_and_a_warning(env, tmp_path, monkeypatch):
    runs = tmp_path / "runs_root"
    write_runs_csv(runs / "ablate" / "cra_gamma", gamma_rows()[:4])  # gamma1 with 3 seeds, gamma0 with 1
    monkeypatch.setenv("FGVC_RUNS_ROOT", str(runs))
    at = open_page("tune")
    figure = next(f for f in charts(at) if "cra_gamma" in f["layout"]["title"]["text"])
    assert figure["layout"]["title"]["text"].endswith("mean ± sd over 1-3 seeds per point")
    trace = figure["data"][0]
    assert trace["text"] == ["n = 1", "n = 3"] and trace["error_y"]["array"][0] is None
    assert [w.value for w in at.warning] == [
        "γ = 0: fewer than two seeds, so no sd; a difference there is not measured."
    ]


def test_without_a_grid_table_the_tabs_say_how_to_make_one_and_draw_nothing(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FGVC_RUNS_ROOT", str(tmp_path / "nothing"))
    at = open_page("tune")
    infos = [m.value for m in at.markdown]
    for grid in ("cra_gamma", "cra_delta"):
        assert any(
            f"No multi-seed table of the `{grid}` grid yet" in i and f"`python -m train.ablate --grid {grid} " in i
            for i in infos
        ), infos
    assert charts(at) == []  # no error bars of anything
    assert "**Test-time δ sweep of one trained model**" in [m.value for m in at.markdown]  # H4's sweep stays


def test_a_typed_grid_folder_is_confined_to_the_runs_roots_and_a_broken_table_is_one_line(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FGVC_RUNS_ROOT", str(tmp_path / "runs"))
    broken = tmp_path / "runs" / "mine"
    broken.mkdir(parents=True)
    (broken / "runs.csv").write_text("variant,test_top1\ngamma0,0.5\n")
    at = open_page("tune")
    at.selectbox(key="gamma_grid_table").set_value("__typed__").run()
    at.text_input(key="gamma_grid_path").set_value("/etc").run()
    assert not at.exception
    assert errors(at) == ["/etc: not available here"]
    at.text_input(key="gamma_grid_path").set_value(str(broken)).run()
    assert errors(at) == [f"{broken / 'runs.csv'} is not a train.ablate runs table: no column seed"]
    assert charts(at) == []


def test_a_grid_table_symlinked_out_of_the_runs_roots_is_not_read(env, tmp_path, monkeypatch):
    outside = write_runs_csv(tmp_path / "outside", gamma_rows())
    folder = tmp_path / "runs" / "ablate" / "cra_gamma"
    folder.mkdir(parents=True)
    (folder / "runs.csv").symlink_to(outside)
    monkeypatch.setenv("FGVC_RUNS_ROOT", str(tmp_path / "runs"))
    assert ablation_tables.grid_tables("cra_gamma", app_paths()) == []
    at = open_page("tune")
    assert any("No multi-seed table of the `cra_gamma` grid yet" in m.value for m in at.markdown)
    assert charts(at) == []


def test_median_run_and_the_table_reader_without_streamlit(env, tmp_path):
    runs = [{"variant": "a", "seed": s, "test_top1": t} for s, t in ((0, 0.3), (1, 0.1), (2, 0.2), (3, 0.4))]
    path = write_runs_csv(tmp_path, runs)
    table = ablation_tables.read_runs_table(path, "typed")
    assert ablation_tables.median_run(table, "a")["seed"] == 2  # the lower of the two middle ones (0.2, 0.3)
    assert math.isnan(table.records[0]["pointing_game"])  # an empty cell is a metric the run does not have
    assert ablation_tables.variant_value("delta0.9", "delta") == 0.9
    assert ablation_tables.variant_value("gamma0.5", "delta") is None
    twice = write_runs_csv(tmp_path / "twice", [{"variant": "a", "seed": 0}, {"variant": "a", "seed": 0}])
    with pytest.raises(ablation_tables.AblationTableError, match="a seed 0 appears twice"):
        ablation_tables.read_runs_table(twice, "typed")


# ---------------------------------------------------------------------------------------- Compare variants
def model_input(env, path: Path, at: AppTest):
    model, meta = fgvc_core.load_checkpoint(path)
    index = sample_box(at).value
    image = fgvc_core.build_dataset("synth", env["FGVC_DATA_ROOT"], "test")[index][0]
    return model, meta, fgvc_core.build_transform(meta)(image)[None]


def image_captions(at: AppTest) -> list[str]:
    return [c for image in at.image for c in image.captions if c]


def test_compare_defaults_to_the_grid_medians_and_shows_each_ones_stage_cams_and_target_probability(env):
    at = open_page("compare")
    assert errors(at) == []
    grid = Path(env["FGVC_RUNS_ROOT"]) / "ablate" / "cra_table3"
    expected = [grid / v / f"seed{TABLE3_MEDIAN[v]}" / "best.safetensors" for v in ("base", "cram", "cram_smram")]
    assert at.multiselect(key="compare_cra").value == [str(p.resolve()) for p in expected]
    rows = [m.value for m in at.markdown if m.value.startswith("**cra_table3 · ")]
    assert len(rows) == 3
    peaks = [c for c in image_captions(at) if c.startswith("stage ")]
    for i, (variant, path) in enumerate(zip(("base", "cram", "cram_smram"), expected)):
        model, meta, x = model_input(env, path, at)
        probs = model.trace(x).probs[0]
        k = int(probs.argmax())
        top1 = TABLE3_TOP1[variant][TABLE3_MEDIAN[variant]]
        assert rows[i].startswith(
            f"**cra_table3 · {variant} (median of 3 seeds: seed {TABLE3_MEDIAN[variant]}, test top-1 {100 * top1:.1f}%)"
            f"** · variant `{variant}` · prediction {meta['classes'][k]} {100 * float(probs[k]):.1f}% · "
            f"P({meta['classes'][k]}) = {100 * float(probs[k]):.1f}%"
        ), rows[i]
        cams = stage_cams(model, x, method="gradcam", target_class=k)
        for j, stage in enumerate((3, 4, 5)):
            # The page's own wording of a peak, applied to the core's map of this model: the right map in each panel.
            words = peak_words(peak_readout(cams[stage][0], (CRA_SIZE, CRA_SIZE)))
            assert peaks[3 * i + j].startswith(f"stage {stage} · {words}"), peaks[3 * i + j]


def test_compare_target_probability_follows_the_sidebar_class(env):
    at = open_page("compare")
    at.sidebar.selectbox(key="target_class").select_index(2).run()
    target = at.sidebar.selectbox(key="target_class").value
    grid = Path(env["FGVC_RUNS_ROOT"]) / "ablate" / "cra_table3"
    model, meta, x = model_input(env, grid / "cram" / "seed0" / "best.safetensors", at)
    p = float(model.trace(x).probs[0, meta["classes"].index(target)])
    row = next(m.value for m in at.markdown if m.value.startswith("**cra_table3 · cram ("))
    assert f"P({target}) = {100 * p:.1f}% · chosen class {target}" in row


def test_compare_shows_rams_one_scale_against_two_scales(env):
    at = open_page("compare")
    grid = Path(env["FGVC_RUNS_ROOT"]) / "ablate" / "rams"
    paths = [grid / v / "seed0" / "best.safetensors" for v in ("one_scale", "two_scales")]
    assert at.multiselect(key="compare_rams").value == [str(p.resolve()) for p in paths]
    rows = [m.value for m in at.markdown if m.value.startswith("**rams · ")]
    assert [" · 1 scale · " in rows[0], " · 2 scales · " in rows[1]] == [True, True]
    captions = image_captions(at)
    for scales, path in zip((1, 2), paths):
        model, meta, x = model_input(env, path, at)
        trace = model.trace(x)
        for s in range(scales):
            p = trace.scales[s].probs[0]
            k = int(p.argmax())
            assert f"scale {s + 1} · rollout · top-1 {meta['classes'][k]} {100 * float(p[k]):.1f}%" in captions
    assert "scale 1 · its box: the zoom" in captions
    assert not any("pick one checkpoint of each" in c.value for c in at.caption)


def test_compare_without_grids_starts_with_the_gamma_sweep_checkpoints(env, tmp_path, monkeypatch):
    monkeypatch.setenv("FGVC_RUNS_ROOT", str(tmp_path / "nothing"))
    at = open_page("compare")
    assert errors(at) == []
    sweep = Path(env["FGVC_CHECKPOINT_DIR"]) / "sweep"
    assert at.multiselect(key="compare_cra").value == [
        str((sweep / f"cra_smra_gamma{g}.safetensors").resolve()) for g in (0, 1)
    ]
    assert len([m for m in at.markdown if "cra_smra_gamma" in m.value]) == 2
    # The old Tune γ slider's check, here: the second row's stage maps are the γ = 1 checkpoint's own.
    model, _, x = model_input(env, sweep / "cra_smra_gamma1.safetensors", at)
    cams = stage_cams(model, x, method="gradcam", target_class=int(model.trace(x).probs.argmax()))
    peaks = [c for c in image_captions(at) if c.startswith("stage ")][3:6]
    for stage, caption in zip((3, 4, 5), peaks):
        assert caption.startswith(f"stage {stage} · {peak_words(peak_readout(cams[stage][0], (CRA_SIZE, CRA_SIZE)))}")
    assert at.multiselect(key="compare_rams").value == [str((Path(env["FGVC_CHECKPOINT_DIR"]) /
                                                             "rams_trans_demo.safetensors").resolve())]  # fmt: skip
    assert any("pick one checkpoint of each" in c.value for c in at.caption)  # one 2-scale demo: no comparison
    assert app_paths().sweep == sweep
