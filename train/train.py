"""Train RAMS-Trans or CRA-SMRA from a YAML recipe.

python -m train.train --config train/configs/cra_smra_demo.yaml [train.epochs=3 model.delta=0.8 ...]
python -m train.train --config ... --resume          # continue a killed run from <output>/last.safetensors
torchrun --nproc_per_node=4 -m train.train --config ...   # several GPUs (DDP)
"""

from __future__ import annotations

import argparse
import sys

from fgvc_core.engine.config import load_config
from fgvc_core.errors import FGVCError


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML recipe (train/configs/*.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from <train.output>/last.safetensors")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar (logs still go to metrics.csv)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.epochs=3")
    return parser


def main(args: argparse.Namespace) -> int:
    from fgvc_core.engine.trainer import run_training

    try:
        config = load_config(args.config, args.overrides)
        best = run_training(config, resume=args.resume, show_progress=not args.no_progress)
    except FGVCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"best checkpoint: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
