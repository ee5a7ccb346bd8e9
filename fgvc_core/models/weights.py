"""Local weight files: read a state dict safely and load the keys that fit, with a report.

No hub, no downloads: users point to a file on disk. ``torch.load`` is only ever called with
``weights_only=True``, so a weights file can never run code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from fgvc_core.errors import CheckpointError

# Wrappers that training scripts commonly put around the real state dict.
_WRAPPER_KEYS = ("state_dict", "model", "model_state", "module", "net")

MIN_PRETRAINED_FRACTION = 0.5
"""Default share of a model's tensors a ``pretrained`` file must fill: below it, the file is for another model."""

log = logging.getLogger(__name__)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors``, ``.pth``/``.pt``/``.bin`` state dict from a local file.

    Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``) and DDP's ``module.`` prefix are removed.

    Raises:
        CheckpointError: the file is missing, unreadable, would need unpickling of arbitrary objects, or holds
            no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every reader error becomes one clear message
        raise CheckpointError(
            f"cannot read weights file {path.name}: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from None
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name} does not hold a state dict (found {type(state).__name__})")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path.name} holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


@dataclass(frozen=True)
class LoadReport:
    """Which keys of a weights file went where. ``matched`` is the number of tensors actually copied."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    shape_mismatch: list[str] = field(default_factory=list)  # in both, different shapes

    @property
    def fraction(self) -> float:
        """Share of the model's tensors that were loaded."""
        total = len(self.matched) + len(self.missing) + len(self.shape_mismatch)
        return len(self.matched) / total if total else 0.0

    def summary(self) -> str:
        return (
            f"{len(self.matched)} tensors loaded, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.shape_mismatch)} with a different shape"
        )

    def details(self, limit: int = 3) -> str:
        """The summary with a few example names of each kind of key that did not load."""
        parts = [self.summary()]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("other shape", self.shape_mismatch)):  # fmt: skip
            if keys:
                more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
                parts.append(f"{label}: {', '.join(keys[:limit])}{more}")
        return "; ".join(parts)


def load_matching(
    module: nn.Module, state: dict[str, torch.Tensor], source: str = "weights", min_fraction: float = 0.0
) -> LoadReport:
    """Copy every tensor of ``state`` whose name and shape fit ``module``; report the rest, and log the report.

    Partial loads are the normal case here (a backbone file into a model with new heads), so mismatches are
    reported (a warning in the log), not raised. Loading *nothing* is always a mistake (wrong file, wrong backbone)
    and raises; so does filling fewer than ``min_fraction`` of ``module``'s tensors (callers that load a
    ``pretrained`` file pass `MIN_PRETRAINED_FRACTION`). Nothing is copied when it raises.
    """
    own = module.state_dict()
    matched, mismatch = [], []
    for key, value in state.items():
        if key in own:
            if own[key].shape == value.shape:
                matched.append(key)
            else:
                mismatch.append(key)
    if not matched:
        example = ", ".join(list(state)[:3])
        raise CheckpointError(
            f"no tensor of {source} matches this model (file keys look like: {example}); is it the right backbone?"
        )
    report = LoadReport(
        matched=matched,
        missing=sorted(set(own) - set(matched) - set(mismatch)),
        unexpected=sorted(set(state) - set(own)),
        shape_mismatch=mismatch,
    )
    if report.fraction < min_fraction:
        raise CheckpointError(
            f"{source} fills only {report.fraction:.0%} of this model's tensors (at least {min_fraction:.0%} "
            f"needed): {report.details()}; is it the right backbone?"
        )
    with torch.no_grad():
        for key in matched:
            own[key].copy_(state[key].to(own[key].dtype))
    partial = report.missing or report.shape_mismatch or report.unexpected
    (log.warning if partial else log.info)("%s: %s", source, report.details())
    return report
