"""Top-k predictions with class names for one or more images.

    fgvc-predict bird1.jpg bird2.png --checkpoint checkpoints/cra_smra_demo.safetensors --topk 5
    python -m train.predict ...        # the same, from a checkout

An image that cannot be read is reported on stderr and skipped; the others are still predicted.
Exit status: 0 every image predicted, 1 some skipped, 2 nothing could be done (bad checkpoint or option, no
readable image).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import fgvc_core
from fgvc_core.errors import FGVCError
from train import cli_args


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli_args.new_parser(__doc__)
    parser.add_argument("images", nargs="+", help="image files")
    cli_args.add_model_args(parser)
    parser.add_argument("--topk", type=cli_args.positive_int, default=5, help="classes per image (default 5)")
    parser.add_argument("--batch-size", type=cli_args.positive_int, default=16, help="images per pass (default 16)")
    return parser


def predict_images(
    model: Any, meta: dict, paths: list[str], topk: int, device: str = "cpu", batch_size: int = 16
) -> tuple[dict[str, list[tuple[str, float]]], dict[str, str]]:
    """Predictions for every readable image, and why each other one was skipped (path -> one-line reason)."""
    import torch

    from fgvc_core.engine.checkpoint import check_finite_outputs

    transform = fgvc_core.build_transform(meta)
    inputs, skipped = {}, {}
    for path in paths:
        try:
            inputs[path] = transform(fgvc_core.load_image(path))
        except FGVCError as exc:
            skipped[path] = str(exc)
    readable, results = list(inputs), {}
    for start in range(0, len(readable), batch_size):
        chunk = readable[start : start + batch_size]
        with torch.no_grad():
            probs = model.predict(torch.stack([inputs[p] for p in chunk]).to(device)).cpu()
        check_finite_outputs(probs)  # never print "nan%"
        values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
        for path, vs, ids in zip(chunk, values.tolist(), indices.tolist()):
            results[path] = [(meta["classes"][i], float(v)) for v, i in zip(vs, ids)]
    return results, skipped


def main(args: argparse.Namespace) -> int:
    try:
        device = cli_args.resolve_device(args.device)
        model, meta = fgvc_core.load_checkpoint(args.checkpoint, device=device)
        results, skipped = predict_images(model, meta, args.images, args.topk, device, args.batch_size)
        if not results:
            raise FGVCError("no image could be read: " + "; ".join(skipped.values()))
    except FGVCError as exc:
        return cli_args.report_error(exc)
    for path in args.images:
        if path in skipped:
            print(f"skipped {path}: {skipped[path]}", file=sys.stderr)
            continue
        print(path)
        for rank, (name, prob) in enumerate(results[path], 1):
            print(f"  {rank}. {name:<40s} {prob:6.1%}")
    return 1 if skipped else 0


def cli() -> int:
    """The ``fgvc-predict`` console script."""
    return main(get_args_parser().parse_args())


if __name__ == "__main__":
    sys.exit(cli())
