"""Top-k predictions with class names for one or more images.

python -m train.predict bird1.jpg bird2.png --checkpoint checkpoints/cra_smra_demo.safetensors --topk 5
"""

from __future__ import annotations

import argparse
import sys

import torch

import fgvc_core
from fgvc_core.errors import FGVCError


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--checkpoint", required=True, help=".safetensors checkpoint with its .json sidecar")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    return parser


def predict_images(
    model, meta: dict, paths: list[str], topk: int, device: str = "cpu"
) -> list[list[tuple[str, float]]]:
    """Per image, the ``topk`` (class name, probability) pairs of the combined prediction."""
    transform = fgvc_core.build_transform(meta)
    batch = torch.stack([transform(fgvc_core.load_image(p)) for p in paths]).to(device)
    probs = model.predict(batch).cpu()
    values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
    classes = meta["classes"]
    return [[(classes[i], float(v)) for v, i in zip(vs, ids)] for vs, ids in zip(values.tolist(), indices.tolist())]


def main(args: argparse.Namespace) -> int:
    try:
        model, meta = fgvc_core.load_checkpoint(args.checkpoint, device=args.device)
        results = predict_images(model, meta, args.images, args.topk, args.device)
    except FGVCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path, ranked in zip(args.images, results):
        print(path)
        for rank, (name, prob) in enumerate(ranked, 1):
            print(f"  {rank}. {name:<40s} {prob:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
