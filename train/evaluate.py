"""Evaluate a checkpoint: top-1/top-5, per-class accuracy and confusion for every head and the combined
prediction; with ``--explain-metrics`` also the explanation and occlusion metrics against ground-truth parts.

    fgvc-evaluate --checkpoint checkpoints/cra_smra_demo.safetensors --explain-metrics
    fgvc-evaluate --checkpoint ... --data-root /data/CUB_200_2011 --dataset cub --split test
    python -m train.evaluate ...        # the same, from a checkout
"""

from __future__ import annotations

import argparse
import json
import sys

import fgvc_core
from fgvc_core.errors import FGVCError
from train import cli_args


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli_args.new_parser(__doc__)
    cli_args.add_model_args(parser)
    parser.add_argument("--dataset", help="dataset name (default: the checkpoint's; synth_stream -> synth)")
    parser.add_argument("--data-root", type=cli_args.existing_dir, help="dataset folder (default: the checkpoint's)")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the checkpoint's test split)")
    parser.add_argument("--batch-size", type=cli_args.positive_int, default=32)
    parser.add_argument("--workers", type=cli_args.nonnegative_int, default=2, help="DataLoader workers (0: none)")
    parser.add_argument("--limit", type=cli_args.positive_int, default=None,
                        help="only the first N images (explanation metrics)")  # fmt: skip
    parser.add_argument("--explain-metrics", action="store_true", help="pointing game, part energy, crop recall, "
                        "occlusion and deletion/insertion against the ground-truth parts")  # fmt: skip
    parser.add_argument("--json", type=cli_args.new_file, help="also write the full report here")
    return parser


def _dataset_args(meta: dict, args: argparse.Namespace) -> tuple[str, str, str]:
    data = meta.get("dataset", {})
    name = args.dataset or data.get("name")
    name = "synth" if name == "synth_stream" else name
    root = args.data_root or data.get("root")
    split = args.split or data.get("test_split", "test")
    if not name or not root:
        raise FGVCError("the checkpoint names no dataset; pass --dataset and --data-root")
    return name, root, split


def format_classification(report: dict) -> str:
    lines = [f"classification ({report['num_samples']} images)", f"  {'head':<10} {'top-1':>7} {'top-5':>7}"]
    for head, row in report.items():
        if isinstance(row, dict):
            lines.append(f"  {head:<10} {row['top1']:>7.2%} {row['top5']:>7.2%}")
    per_class = [a for a in report["per_class_accuracy"] if a == a]
    lines.append(f"  per-class accuracy: min {min(per_class):.2%}, mean {sum(per_class) / len(per_class):.2%}")
    return "\n".join(lines)


def format_explanations(report: dict) -> str:
    from fgvc_core.explain.scoring.metrics import format_summary

    lines = [f"explanations: {report['map']} on {report['images']} images (chance {report['chance']:.1%})"]
    for key, summary in report.items():
        if isinstance(summary, dict):
            lines.append(format_summary(summary, f"{key}:"))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    import torch

    from fgvc_core.engine.data import eval_loader
    from fgvc_core.engine.trainer import evaluate_model

    try:
        device = torch.device(cli_args.resolve_device(args.device))
        model, meta = fgvc_core.load_checkpoint(args.checkpoint, device=device)
        name, root, split = _dataset_args(meta, args)
        transform = fgvc_core.build_transform(meta)
        dataset = fgvc_core.build_dataset(name, root, split, transform)
        if list(dataset.classes) != list(meta["classes"]):
            raise FGVCError(f"the classes of {root} ({split}) differ from the checkpoint's")
        report = {"classification": evaluate_model(model, eval_loader(dataset, args.batch_size, args.workers),
                                                   device, "none")}  # fmt: skip
        print(format_classification(report["classification"]))
        if args.explain_metrics:
            from fgvc_core.explain.scoring.evaluation import evaluate_explanations

            raw = fgvc_core.build_dataset(name, root, split)
            report["explanations"] = evaluate_explanations(model, raw, meta["preprocess"], limit=args.limit)
            print(format_explanations(report["explanations"]))
    except FGVCError as exc:
        return cli_args.report_error(exc)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def cli() -> int:
    """The ``fgvc-evaluate`` console script."""
    return main(get_args_parser().parse_args())


if __name__ == "__main__":
    sys.exit(cli())
