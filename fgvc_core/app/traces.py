"""Session-cached calls into the core: traces, CAMs and rollouts of one image, each with its measured time.

Every model works alike (its :class:`~fgvc_core.models.registry.ModelSpec` says what differs):
- :func:`base_trace` is the full pass with the checkpoint's own options; its time is the "full pass" the pages
  compare against;
- :func:`model_trace` applies a slider's overrides (the spec's ``trace_options``) from the base trace's reusable
  state, ``model.trace(None, ..., cache=base.cache)``: RAMS-Trans reruns one O(L·N²) rollout, the box and scale 2
  (no scale-1 pass); CRA-SMRA reruns only stages 4-5 and the heads.
Every cached value is named by :func:`trace_key`, and every function returns a :class:`~fgvc_core.app.session.Timed`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import torch

from fgvc_core.app.images import ImageChoice
from fgvc_core.app.models import LoadedModel
from fgvc_core.app.session import Timed, cached
from fgvc_core.errors import ConfigError
from fgvc_core.models.registry import get_spec


def _frozen(value: Any) -> Hashable:
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def trace_key(spec_name: str, checkpoint_key: str, image_key: Hashable, **options: Any) -> tuple:
    """The one name of a cached trace (or of anything derived from one image on one checkpoint).

    Options left at None are dropped, so an override equal to "the checkpoint's own" names the base trace; lists
    become tuples. A derived value passes ``product=`` (``"vit_cam"``, ``"stage_cams"``...) among the options.
    """
    frozen = tuple(sorted((name, _frozen(value)) for name, value in options.items() if value is not None))
    return ("trace", spec_name, checkpoint_key, image_key, frozen)


def _x(loaded: LoadedModel, image: ImageChoice) -> torch.Tensor:
    return loaded.input_tensor(image.image)


def _context(loaded: LoadedModel, image: ImageChoice) -> dict[str, Any]:
    """What the model's trace takes about the upload (its spec's ``trace_context``)."""
    offered = {"original_size": image.image.size, "preprocess": loaded.preprocess}
    return {name: offered[name] for name in get_spec(loaded.kind).trace_context}


def base_trace(loaded: LoadedModel, image: ImageChoice) -> Timed:
    """The full trace of ``image`` with the checkpoint's own options."""
    context = _context(loaded, image)
    return cached(
        trace_key(loaded.kind, loaded.key, image.key), lambda: loaded.model.trace(_x(loaded, image), **context)
    )


def model_trace(loaded: LoadedModel, image: ImageChoice, **overrides: Any) -> Timed:
    """A trace with ``overrides`` (None: the checkpoint's value), from the base trace's cache.

    Raises:
        ConfigError: an override the model's trace does not take.
    """
    spec = get_spec(loaded.kind)
    options = {name: value for name, value in overrides.items() if value is not None}
    unknown = set(options) - set(spec.trace_options)
    if unknown:
        raise ConfigError(f"{spec.title} traces take {', '.join(spec.trace_options)}, not {', '.join(sorted(unknown))}")
    if not options:
        return base_trace(loaded, image)
    base = base_trace(loaded, image).value
    context = _context(loaded, image)
    return cached(
        trace_key(spec.name, loaded.key, image.key, **options),
        lambda: loaded.model.trace(None, cache=base.cache, **context, **options),
    )


# The pages' names for the two models' traces: the same generic calls.
rams_base = base_trace
cra_base = base_trace


def rams_trace(
    loaded: LoadedModel,
    image: ImageChoice,
    threshold: float | Sequence[float] | None = None,
    head_fusion: str | None = None,
    rollout_query: str | None = None,
    discard_ratio: float | None = None,
    start_layer: int | None = None,
) -> Timed:
    """A RAMS-Trans trace with DPPM overrides, from the base trace's scale-1 attention (no scale-1 pass)."""
    return model_trace(
        loaded,
        image,
        threshold=threshold,
        head_fusion=head_fusion,
        rollout_query=rollout_query,
        discard_ratio=discard_ratio,
        start_layer=start_layer,
    )


def cra_trace(loaded: LoadedModel, image: ImageChoice, delta: float | None, omega: float | None) -> Timed:
    """A CRA-SMRA trace at δ/ω, rerunning only stages 4-5 from the base trace's cached stage-3 output."""
    return model_trace(loaded, image, delta=delta, omega=omega)


def attention_gradients(loaded: LoadedModel, image: ImageChoice, scale: int, target: int) -> Timed:
    """``(attentions, gradients, classes)`` of one scale's input w.r.t. the ``target`` logit (gradient rollout)."""
    crop = base_trace(loaded, image).value.scales[scale].crop
    return cached(
        trace_key(loaded.kind, loaded.key, image.key, product="attention_gradients", scale=scale, target=target),
        lambda: loaded.model.attention_gradients(crop, target=target, scale=scale),
    )


def vit_cam(loaded: LoadedModel, image: ImageChoice, target: int, method: str, scale: int = 0) -> Timed:
    """pytorch-grad-cam on the last block of RAMS-Trans for one scale, ``(H, W)`` in [0, 1]."""
    cam = get_spec(loaded.kind).cam()  # RAMS-Trans: explain.attribution.vit_cam.rams_trans_cam
    crop = base_trace(loaded, image).value.scales[scale].crop
    return cached(
        trace_key(loaded.kind, loaded.key, image.key, product="vit_cam", target=target, method=method, scale=scale),
        lambda: cam(loaded.model, crop, target=target, scale=scale, method=method, layer=-1)[0],
    )


def stage_cams(
    loaded: LoadedModel,
    image: ImageChoice,
    target: int,
    method: str,
    delta: float | None = None,
    omega: float | None = None,
    layer: str = "enhanced",
    normalise: str = "per_map",
) -> Timed:
    """Per-stage CAMs ``{3|4|5: (H, W)}`` in [0, 1] for one image (one forward and one backward)."""
    cam = get_spec(loaded.kind).cam()  # CRA-SMRA: explain.attribution.cam.stage_cams
    x = _x(loaded, image)

    def compute() -> dict[int, object]:
        maps = cam(
            loaded.model,
            x,
            target_class=target,
            method=method,
            delta=delta,
            omega=omega,
            layer=layer,
            normalise=normalise,
        )
        return {stage: m[0] for stage, m in maps.items()}

    key = trace_key(
        loaded.kind, loaded.key, image.key, product="stage_cams", target=target, method=method, delta=delta,
        omega=omega, layer=layer, normalise=normalise,
    )  # fmt: skip
    return cached(key, compute)
