"""Generate the synthetic fine-grained benchmark in the CUB-200-2011 layout.

Example::

    python -m train.make_synth --out data/synth --classes 12 --per-class 100 --size 224 --seed 1 --workers 2
    python -m train.make_synth --contact-sheet docs/synth_contact_sheet.png      # only the contact sheet

The class table is fixed (the seed only changes instances), so a benchmark written with another seed is a fair
held-out set for a model trained on this one. See docs/synth.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from fgvc_core.errors import FGVCError


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="output folder (must be new or empty unless --overwrite)")
    parser.add_argument("--classes", type=int, default=12, help="number of classes (2..45; default 12 = 3x2x2)")
    parser.add_argument("--per-class", type=int, default=50, help="images per class, train + test (default 50)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument("--seed", type=int, default=0, help="instance seed; never changes what a class means")
    parser.add_argument("--test-fraction", type=float, default=0.5, help="test share of each class (default 0.5)")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes; output bytes do not depend on it")
    parser.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality (default 95)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--contact-sheet", metavar="PATH", help="also write a PNG with one example per class")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.out is None and args.contact_sheet is None:
        get_args_parser().error("give --out and/or --contact-sheet")
    try:
        if args.out is not None:
            from fgvc_core.data.synth.writer import write_benchmark

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
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
