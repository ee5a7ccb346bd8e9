"""The face both FGVC models share, so that the engine, the CLI and the app treat them alike.

Like timm's models, each model keeps ``forward`` simple; unlike them, it has several heads (scales or stages),
a combined test-time prediction, a training loss with auxiliary terms, and a ``trace`` that returns every
intermediate artefact as a frozen dataclass without leaving hooks behind. Every trace satisfies :class:`Trace`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
import torch.nn as nn

from fgvc_core.errors import ConfigError


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


class ExplanationMap(NamedTuple):
    """A model's default explanation map of one traced image.

    Attributes:
        map: ``(H, W)`` float tensor over the network input, in its pixels, finite, in [0, 1] (max-normalised).
        name: what the map is (the spec's ``default_map``, e.g. ``"attention rollout (scale 1)"``).
    """

    map: torch.Tensor
    name: str


@runtime_checkable
class Trace(Protocol):
    """What every model's ``trace`` returns, whatever else it carries (scales, stages...).

    Attributes:
        probs: the combined prediction ``(B, K)``, equal to ``model.predict(x)``.
        head_probs: per head (``model.head_names``), the head's softmax ``(B, K)``.
        cache: the reusable intermediate state: ``model.trace(x, <new options>, cache=trace.cache)`` recomputes
            only what those options change.
    """

    probs: torch.Tensor

    @property
    def head_probs(self) -> dict[str, torch.Tensor]: ...

    @property
    def cache(self) -> Any: ...

    def default_map(self, row: int = 0) -> ExplanationMap:
        """The model's default explanation map of image ``row``, resampled to the network input's pixels."""
        ...


def check_input_cache(cache: Any, kind: type, model: nn.Module, x: torch.Tensor | None) -> Any:
    """``cache`` if it is a ``kind`` state (fields ``x``, ``config``, ``owner``) this model made for this input.

    Raises:
        ConfigError: another type, another model (or the same model rebuilt), or another input.
    """
    if not isinstance(cache, kind):
        raise ConfigError(f"cache must be trace.cache (a {kind.__name__}), got {type(cache).__name__}")
    if cache.config != model.config or cache.owner != id(model):
        raise ConfigError("cache: that trace was made by another model; trace without a cache")
    if x is not None and (x.shape != cache.x.shape or not torch.equal(x.detach().cpu(), cache.x)):
        raise ConfigError("cache: the trace was made for another input; trace the new input without a cache")
    return cache


def to_input_pixels(grid_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A ``(h, w)`` map bilinearly resampled to ``size`` ``(H, W)`` and max-normalised to [0, 1] (float32, CPU).

    A constant map stays constant (all zeros if it is zero everywhere), never NaN.
    """
    resized = torch.nn.functional.interpolate(
        grid_map.detach().float().cpu()[None, None], size=tuple(size), mode="bilinear", align_corners=False
    )[0, 0]
    resized = resized - resized.min()
    peak = resized.max()
    return resized / peak if peak > 0 else resized


class FGVCModel(nn.Module):
    """Base class: subclasses implement ``forward``, ``loss`` and ``trace``.

    Attributes set by subclasses:
        model_name: the registry name (``fgvc_core.models.registry.get_spec(model_name)`` describes the model).
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

    def trace(self, x: torch.Tensor, cache: Any = None, **overrides: Any) -> Trace:  # pragma: no cover - abstract
        """Every intermediate artefact of an eval-behaviour pass, with options overridden for this call only.

        ``cache`` is an earlier trace's ``.cache`` of the same input on this model: only what the overrides change
        is recomputed. Never changes the model (no hooks, attribute writes or mode flips).
        """
        raise NotImplementedError
