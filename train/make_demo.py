"""Train, evaluate and export every demo checkpoint the app opens by default (resumable: rerun to continue).

    python -m train.make_demo                 # everything: RAMS-Trans, CRA-SMRA, and the CRA-SMRA γ sweep
    python -m train.make_demo --only cra_smra_demo --only sweep/cra_smra_gamma0

Each run trains with ``train/configs/<recipe>.yaml`` (+ overrides) into ``runs/<name>/``, continuing from its
``last.safetensors`` when one exists. A finished run is evaluated on the held-out benchmark (classification and
explanation metrics) and exported as fp16 to ``checkpoints/<name>.safetensors`` with the numbers in its sidecar.

Runs outlive a session through ``train/wip_runs/``: ``--stash`` copies each unfinished run's resumable files there
(to be committed), and a later ``make_demo`` on a fresh clone restores them into ``runs/`` and continues.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIP = ROOT / "train" / "wip_runs"
RESUMABLE = ("last.safetensors", "last.train.safetensors", "last.json", "best.safetensors", "best.json",
             "last.prev.safetensors", "last.prev.train.safetensors", "last.prev.json",  # resume's fallback set
             "metrics.csv", "config.yaml", "status.json")  # fmt: skip

# name -> (recipe, overrides). The sweep trains every γ with one shorter, equal budget (the paper's Table 5 idea):
# 3 epochs of 8000 fresh images, 750 steps (~25 min on one CPU core); the main run reached 91.8% after 3 epochs.
SWEEP_BUDGET = ["train.epochs=3"]
# CRA-SMRA comes first: the RAMS-Trans demo's hybrid embedding starts from checkpoints/cra_smra_demo.safetensors.
DEMO_RUNS: dict[str, tuple[str, list[str]]] = {
    "cra_smra_demo": ("cra_smra_demo", []),
    **{f"sweep/cra_smra_gamma{g:g}": ("cra_smra_demo", [f"model.gamma={g:g}", *SWEEP_BUDGET]) for g in (0.0, 1.0, 2.0)},
    "rams_trans_demo": ("rams_trans_demo", []),
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(DEMO_RUNS), help="run only these (repeatable)")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--explain-limit", type=int, default=240, help="images for the explanation metrics")
    parser.add_argument("--export-only", action="store_true", help="export finished runs, train nothing")
    parser.add_argument(
        "--stash", action="store_true", help=f"copy the runs' resumable files to {WIP.relative_to(ROOT)}"
    )
    return parser


def copy_run(source: Path, target: Path, names: tuple[str, ...] | None = None) -> list[str]:
    """Copy ``names`` (default: the files a run needs to resume) from ``source`` to ``target``; returns those copied."""
    target.mkdir(parents=True, exist_ok=True)
    copied = [name for name in (names or RESUMABLE) if (source / name).is_file()]
    for name in copied:
        shutil.copy2(source / name, target / name)
    return copied


def export(best: Path, target: Path, explain_limit: int) -> dict:
    """Evaluate ``best`` on its test split and write it as fp16 to ``target`` with the metrics in the sidecar."""
    import fgvc_core
    from fgvc_core.engine.data import eval_loader
    from fgvc_core.engine.trainer import evaluate_model
    from fgvc_core.explain.scoring.evaluation import evaluate_explanations

    model, meta = fgvc_core.load_checkpoint(best)
    data = meta["dataset"]
    name = "synth" if data["name"] == "synth_stream" else data["name"]
    test = fgvc_core.build_dataset(name, data["root"], data["test_split"], fgvc_core.build_transform(meta))
    report = evaluate_model(model, eval_loader(test, 32, 1), model_device(model), "none")
    raw = fgvc_core.build_dataset(name, data["root"], data["test_split"])
    explanations = evaluate_explanations(model, raw, meta["preprocess"], limit=explain_limit)
    keep = {k: v for k, v in meta.items() if k not in ("format", "format_version", "code_version", "model", "weights")}
    keep["metrics"] = {**{f"{h}_{k}": v for h, row in report.items() if isinstance(row, dict) for k, v in row.items()},
                       "per_class_accuracy": report["per_class_accuracy"]}  # fmt: skip
    keep["explain_metrics"] = explanations
    keep["trained_from"] = str(best.relative_to(ROOT)) if best.is_relative_to(ROOT) else str(best)
    fgvc_core.save_checkpoint(model, target, keep, dtype="float16")
    return keep


def model_device(model):
    return next(model.parameters()).device


def main(args: argparse.Namespace) -> int:
    from fgvc_core.engine.config import load_config
    from fgvc_core.engine.trainer import run_training
    from fgvc_core.errors import FGVCError

    names = args.only or list(DEMO_RUNS)
    for name in names:
        recipe, overrides = DEMO_RUNS[name]
        run_dir = args.runs_dir / name
        if args.stash:
            if (run_dir / "last.safetensors").is_file():
                print(f"== {name}: stashed {', '.join(copy_run(run_dir, WIP / name))}")
            continue
        if not (run_dir / "last.safetensors").exists() and (WIP / name / "last.safetensors").exists():
            print(f"== {name}: restoring the stashed run from {WIP / name}")
            copy_run(WIP / name, run_dir)
        try:
            config = load_config(ROOT / "train" / "configs" / f"{recipe}.yaml", [*overrides, f"train.output={run_dir}"])
            best = run_dir / "best.safetensors"
            if not args.export_only:
                print(f"== {name}: training into {run_dir} (resumes when possible)")
                best = run_training(config, resume=True)
            if not best.exists():
                print(f"== {name}: no finished run to export yet")
                continue
            meta = export(best, args.out_dir / f"{name}.safetensors", args.explain_limit)
            print(f"== {name}: exported, test top-1 {meta['metrics']['combined_top1']:.2%}")
        except FGVCError as exc:
            print(f"error in {name}: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
