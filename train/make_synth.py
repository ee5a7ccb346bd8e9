"""Generate the synthetic fine-grained benchmark in the CUB-200-2011 layout.

Example::

    python -m train.make_synth --out data/synth --classes 12 --per-class 100 --size 224 --seed 1 --workers 2
    python -m train.make_synth --contact-sheet docs/synth_contact_sheet.png --seed 0   # only the contact sheet

The class table is fixed (the seed only changes instances), so a benchmark written with another seed is a fair
held-out set for a model trained on this one. A seed that a shipped checkpoint trained on (its sidecar's
``train_config.data.seed`` for ``synth_stream``; 0 for the demo models) is refused for ``--out`` unless
``--allow-train-seed``: its "test" split would hold that model's training images. See docs/synth.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fgvc_core.errors import ConfigError, FGVCError
from train import cli_args

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
MAX_CLASSES = 45  # fgvc_core.data.synth.spec.MAX_CLASSES; checked there too, not imported (keeps --help fast)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli_args.Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=cli_args.output_dir, help="output folder (must be new or empty unless --overwrite)"
    )
    parser.add_argument("--classes", type=cli_args.int_in(2, MAX_CLASSES), default=12,
                        help=f"number of classes (2..{MAX_CLASSES}; default 12 = 3x2x2)")  # fmt: skip
    parser.add_argument("--per-class", type=cli_args.positive_int, default=50,
                        help="images per class, train + test (default 50)")  # fmt: skip
    parser.add_argument(
        "--size", type=cli_args.int_in(32, 4096), default=224, help="image side in pixels (default 224)"
    )
    parser.add_argument("--seed", type=cli_args.nonnegative_int, default=1,
                        help="instance seed, never what a class means (default 1: the demo's test data)")  # fmt: skip
    parser.add_argument("--allow-train-seed", action="store_true",
                        help="write --out even with a seed a shipped checkpoint trained on")  # fmt: skip
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, metavar="DIR",
                        help="sidecars naming the training seeds (default: the repository's checkpoints/)")  # fmt: skip
    parser.add_argument("--test-fraction", type=cli_args.open_fraction, default=0.5,
                        help="test share of each class, strictly between 0 and 1 (default 0.5)")  # fmt: skip
    parser.add_argument("--workers", type=cli_args.positive_int, default=1,
                        help="rendering processes; output bytes do not depend on it")  # fmt: skip
    parser.add_argument("--jpeg-quality", type=cli_args.int_in(1, 100), default=95, help="JPEG quality (default 95)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--contact-sheet", metavar="PATH", type=cli_args.output_file,
                        help="also write a PNG with one example per class")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def training_stream_seeds(folder: Path) -> dict[int, list[str]]:
    """Seed -> the checkpoints (sidecars under ``folder``) that trained on the default ``SynthStream`` with that seed.

    What this command writes is the default benchmark, so a stream of a named setting (``options.setting``, e.g. the
    ablations' ``hard``) draws other images and is left out. Checkpoints are named by their path under ``folder``.
    A sidecar that is not readable JSON, or not a synth-stream run, names no seed.
    """
    seeds: dict[int, list[str]] = {}
    for sidecar in sorted(Path(folder).glob("**/*.json")):
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))["train_config"]["data"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not isinstance(data, dict) or data.get("name") != "synth_stream" or not isinstance(data.get("seed"), int):
            continue
        options = data.get("options")
        if isinstance(options, dict) and options.get("setting") not in (None, "demo"):
            continue
        seeds.setdefault(data["seed"], []).append(sidecar.relative_to(folder).with_suffix("").as_posix())
    return seeds


def check_not_a_training_seed(seed: int, folder: Path) -> None:
    """Refuse a seed whose images some shipped checkpoint trained on (its "test" split would not be held out)."""
    users = training_stream_seeds(folder).get(seed)
    if users:
        raise ConfigError(
            f"seed {seed} is the training stream of {', '.join(users)}: its test split would hold their training "
            "images; pick another --seed (the demo's test data uses 1) or pass --allow-train-seed"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.out is None and args.contact_sheet is None:
        parser.error("give --out and/or --contact-sheet")
    try:
        if args.out is not None:
            from fgvc_core.data.synth.writer import write_benchmark

            if not args.allow_train_seed:
                check_not_a_training_seed(args.seed, args.checkpoints)
            start = time.perf_counter()
            root = write_benchmark(
                args.out,
                num_classes=args.classes,
                per_class=args.per_class,
                size=args.size,
                seed=args.seed,
                test_fraction=args.test_fraction,
                workers=args.workers,
                jpeg_quality=args.jpeg_quality,
                overwrite=args.overwrite,
                progress=not args.quiet,
            )
            seconds = time.perf_counter() - start
            total = args.classes * args.per_class
            print(f"wrote {total} images to {root} in {seconds:.1f} s ({total / seconds:.0f} images/s)")
        if args.contact_sheet is not None:
            from fgvc_core.data.synth.contact_sheet import write_contact_sheet

            path = write_contact_sheet(args.contact_sheet, num_classes=args.classes, size=args.size, seed=args.seed)
            print(f"wrote contact sheet {path}")
    except FGVCError as exc:
        return cli_args.report_error(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
