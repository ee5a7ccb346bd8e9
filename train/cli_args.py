"""What every CLI here shares: a parser whose errors are one line (exit 2), argparse type functions, the device.

Importing this module must stay cheap (no torch): ``--help`` of every CLI has to answer in well under a second.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from fgvc_core.errors import FGVCError

DEVICE_HELP = "auto (CUDA when present, else CPU) | cpu | cuda | cuda:N (default auto)"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that reports a bad argument as one line, ``error: ...``, and exits with 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def new_parser(doc: str | None) -> Parser:
    """The parser every CLI starts from: the module docstring as description, kept as written."""
    return Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` and ``--device``, the same for every CLI that loads a trained model."""
    parser.add_argument("--checkpoint", required=True, type=existing_file,
                        help=".safetensors checkpoint with its .json sidecar")  # fmt: skip
    parser.add_argument("--device", type=device_spec, default="auto", help=DEVICE_HELP)


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer ``low <= n`` (and ``<= high`` when given)."""
    wanted = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its own messages
    return parse


positive_int = int_in(1)
nonnegative_int = int_in(0)


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def open_fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    value = finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def existing_file(text: str) -> str:
    """An argparse type: a path to an existing regular file (kept as given)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return text


def existing_dir(text: str) -> str:
    """An argparse type: a path to an existing folder (kept as given)."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    return text


def new_file(text: str) -> Path:
    """An argparse type: a file to write, whose folder exists and which is not itself a folder."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {path.parent}")
    return path


def output_file(text: str) -> Path:
    """An argparse type: a file to write whose missing folders will be created; it must not be a folder."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    return Path(text)


def output_dir(text: str) -> Path:
    """An argparse type: a folder to write into (it may not exist yet, but must not be a file)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return path


def device_spec(text: str) -> str:
    """An argparse type: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether CUDA is there is checked later)."""
    if not _DEVICE_RE.match(text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def resolve_device(spec: str) -> str:
    """The torch device for ``spec``: ``auto`` is CUDA when present, else CPU.

    Raises:
        FGVCError: CUDA (or that CUDA device) was asked for and is not available on this machine.
    """
    import torch  # here, not at the top: --help must not pay for torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FGVCError(f"--device {spec}: CUDA is not available on this machine; use --device cpu or auto")
        index = int(spec.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise FGVCError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return spec


def report_error(exc: FGVCError) -> int:
    """Print a user error as one line on stderr; the exit status for it (2)."""
    print(f"error: {exc}", file=sys.stderr)
    return 2
