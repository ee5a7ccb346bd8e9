"""Train RAMS-Trans or CRA-SMRA from a YAML recipe.

fgvc-train --config train/configs/cra_smra_demo.yaml [train.epochs=3 model.delta=0.8 ...]
fgvc-train --config ... --resume train.epochs=20   # continue a killed run from <output>/last.safetensors
torchrun --nproc_per_node=4 -m train.train --config ...   # several GPUs (DDP)
python -m train.train ...                          # the same as fgvc-train, from a checkout
"""

from __future__ import annotations

import argparse
import sys

from fgvc_core.errors import FGVCError
from train import cli_args


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli_args.new_parser(__doc__)
    parser.add_argument("--config", required=True, type=cli_args.existing_file,
                        help="YAML recipe (train/configs/*.yaml)")  # fmt: skip
    parser.add_argument("--resume", action="store_true", help="continue from <train.output>/last.safetensors")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar (logs still go to metrics.csv)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.epochs=3")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options and overrides in any order (``--resume train.epochs=5`` as well as ``train.epochs=5 --resume``)."""
    return get_args_parser().parse_intermixed_args(argv)


def main(args: argparse.Namespace) -> int:
    from fgvc_core.engine.config import load_config
    from fgvc_core.engine.trainer import run_training

    try:
        config = load_config(args.config, args.overrides)
        best = run_training(config, resume=args.resume, show_progress=not args.no_progress)
    except FGVCError as exc:
        return cli_args.report_error(exc)
    print(f"best checkpoint: {best}")
    return 0


def cli() -> int:
    """The ``fgvc-train`` console script."""
    return main(parse_args())


if __name__ == "__main__":
    sys.exit(cli())
