"""The face both FGVC models share, so that the engine, the CLI and the app treat them alike.

Like timm's models, each model keeps ``forward`` simple; unlike them, it has several heads (scales or stages),
a combined test-time prediction, a training loss with auxiliary terms, and a ``trace`` that returns every
intermediate artefact as a frozen dataclass without leaving hooks behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn


@dataclass
class ModelOutput:
    """What ``forward`` returns.

    Attributes:
        logits: per-head logits ``(B, K)``, in a fixed order (``model.head_names``).
        probs: the combined test-time prediction ``(B, K)`` (the paper's rule: mean of the heads' softmaxes).
        aux: extra tensors the loss needs (e.g. ``l_div`` for CRA-SMRA, ``boxes`` for RAMS-Trans).
    """

    logits: dict[str, torch.Tensor]
    probs: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


class FGVCModel(nn.Module):
    """Base class: subclasses implement ``forward``, ``loss`` and ``trace``.

    Attributes set by subclasses:
        model_name: the registry name (``"rams_trans"`` / ``"cra_smra"``).
        head_names: keys of ``ModelOutput.logits``.
        config: plain build options such that ``build_model(model_name, **config)`` rebuilds the same
            architecture (``pretrained`` is never stored: a checkpoint carries the weights itself).
    """

    model_name: str = ""
    head_names: tuple[str, ...] = ()

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = {k: v for k, v in config.items() if k != "pretrained"}

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    def forward(self, x: torch.Tensor) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, output: ModelOutput, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The paper's training loss and its parts as floats (for logs)."""
        raise NotImplementedError  # pragma: no cover - abstract

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Combined probabilities ``(B, K)`` in eval mode, whatever mode the module is in.

        Does not flip ``self.training``: a cached model shared by several app sessions must not change state.
        Subclasses whose forward depends on the mode override this with a mode-explicit path.
        """
        return self.forward(x).probs

    def trace(self, x: torch.Tensor, **overrides: Any):  # pragma: no cover - abstract
        raise NotImplementedError
