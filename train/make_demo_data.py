"""Write the app's default benchmark to ``data/synth`` unless a complete, matching copy is already there.

``make app`` runs ``python -m train.make_demo_data`` on every start, so this must be idempotent and cheap when the
data exists: it only checks synth_meta.json and that every listed image is present. A missing, incomplete or
differently-generated folder (another version, seed, size or count) is rebuilt.

The disk copy uses seed 1. The demo models train on ``SynthStream`` with another seed (e.g. 0), so this copy's
test split is a held-out set for them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from fgvc_core.data.synth.spec import GENERATOR_VERSION
from fgvc_core.data.synth.writer import META_FILE, is_complete, write_benchmark
from fgvc_core.errors import FGVCError
from train import cli_args

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO_ROOT / "data" / "synth"
DEMO = {"num_classes": 12, "per_class": 100, "size": 224, "seed": 1, "test_fraction": 0.5}
"""The default benchmark: 12 classes x 100 images (50 train + 50 test each) at 224 px, seed 1."""


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli_args.Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=cli_args.output_dir, default=DEFAULT_ROOT,
                        help="target folder (default: <repo>/data/synth)")  # fmt: skip
    parser.add_argument("--per-class", type=cli_args.positive_int, default=DEMO["per_class"], help="images per class")
    parser.add_argument("--size", type=cli_args.int_in(32, 4096), default=DEMO["size"], help="image side in pixels")
    parser.add_argument("--workers", type=cli_args.positive_int, default=1, help="rendering processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def matches(root: Path, wanted: dict) -> bool:
    """True when ``root`` is a complete benchmark generated with exactly ``wanted`` by this generator version."""
    if not is_complete(root):
        return False
    meta = json.loads((root / META_FILE).read_text(encoding="utf-8"))
    return meta.get("version") == GENERATOR_VERSION and all(meta.get(k) == v for k, v in wanted.items())


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    root = Path(args.root)
    wanted = {**DEMO, "per_class": args.per_class, "size": args.size}
    if matches(root, wanted):
        print(f"demo data ready: {root}")
        return 0
    if root.exists() and any(root.iterdir()) and not (root / "images").exists() and not (root / META_FILE).exists():
        print(f"error: {root} holds something that is not a synth benchmark; move it away first", file=sys.stderr)
        return 2
    print(f"writing demo data to {root} ...")
    try:
        write_benchmark(root, workers=args.workers, overwrite=True, progress=not args.quiet, **wanted)
    except FGVCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"demo data ready: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
