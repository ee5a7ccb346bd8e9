"""Session-cached calls into the core: traces, CAMs and rollouts of one image, each with its measured time.

Slider moves reuse what does not change:
- RAMS-Trans: a new threshold (or rollout option) reuses the scale-1 attention of the base trace
  (``trace(None, ..., reuse=base)``): one O(L·N²) rollout, the box and scale 2;
- CRA-SMRA: a new δ/ω reuses the base trace's stage-3 output (``trace(x, delta, omega, cache=base.cache)``):
  only stages 4-5 and the heads run.
The base trace is the full pass with the checkpoint's own options; its time is the "full pass" the pages compare
against. Every function returns a :class:`~fgvc_core.app.session.Timed`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fgvc_core.app.images import ImageChoice
from fgvc_core.app.models import LoadedModel
from fgvc_core.app.session import Timed, cached


def _x(loaded: LoadedModel, image: ImageChoice) -> torch.Tensor:
    return loaded.input_tensor(image.image)


def rams_base(loaded: LoadedModel, image: ImageChoice) -> Timed:
    """The full RAMS-Trans trace of ``image`` with the checkpoint's DPPM options."""
    return cached(
        ("rams_base", loaded.key, image.key),
        lambda: loaded.model.trace(_x(loaded, image), original_size=image.image.size, preprocess=loaded.preprocess),
    )


def rams_trace(
    loaded: LoadedModel,
    image: ImageChoice,
    threshold: float | Sequence[float] | None = None,
    head_fusion: str | None = None,
    query: str | None = None,
    discard_ratio: float | None = None,
    start_layer: int | None = None,
) -> Timed:
    """A RAMS-Trans trace with DPPM overrides, from the base trace's scale-1 attention (no scale-1 pass)."""
    options = dict(
        threshold=threshold, head_fusion=head_fusion, query=query, discard_ratio=discard_ratio, start_layer=start_layer
    )
    if all(v is None for v in options.values()):
        return rams_base(loaded, image)
    base = rams_base(loaded, image).value
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in options.items()))
    return cached(
        ("rams", loaded.key, image.key, frozen),
        lambda: loaded.model.trace(
            None, reuse=base, original_size=image.image.size, preprocess=loaded.preprocess, **options
        ),
    )


def attention_gradients(loaded: LoadedModel, image: ImageChoice, scale: int, target: int) -> Timed:
    """``(attentions, gradients, classes)`` of one scale's input w.r.t. the ``target`` logit (gradient rollout)."""
    crop = rams_base(loaded, image).value.scales[scale].crop
    return cached(
        ("attn_grads", loaded.key, image.key, scale, target),
        lambda: loaded.model.attention_gradients(crop, target=target, scale=scale),
    )


def vit_cam(loaded: LoadedModel, image: ImageChoice, target: int, method: str, scale: int = 0) -> Timed:
    """pytorch-grad-cam on the last block of RAMS-Trans for one scale, ``(H, W)`` in [0, 1]."""
    from fgvc_core.explain.attribution.vit_cam import rams_trans_cam

    crop = rams_base(loaded, image).value.scales[scale].crop
    return cached(
        ("vit_cam", loaded.key, image.key, target, method, scale),
        lambda: rams_trans_cam(loaded.model, crop, target=target, scale=scale, method=method, layer=-1)[0],
    )


def cra_base(loaded: LoadedModel, image: ImageChoice) -> Timed:
    """The full CRA-SMRA trace of ``image`` with the checkpoint's δ and ω."""
    return cached(("cra_base", loaded.key, image.key), lambda: loaded.model.trace(_x(loaded, image)))


def cra_trace(loaded: LoadedModel, image: ImageChoice, delta: float | None, omega: float | None) -> Timed:
    """A CRA-SMRA trace at δ/ω, rerunning only stages 4-5 from the base trace's cached stage-3 output."""
    if delta is None and omega is None:
        return cra_base(loaded, image)
    base = cra_base(loaded, image).value
    x = _x(loaded, image)
    return cached(
        ("cra", loaded.key, image.key, delta, omega),
        lambda: loaded.model.trace(x, delta=delta, omega=omega, cache=base.cache),
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
    from fgvc_core.explain.attribution.cam import stage_cams as core_stage_cams

    x = _x(loaded, image)

    def compute() -> dict[int, object]:
        maps = core_stage_cams(
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

    return cached(("stage_cams", loaded.key, image.key, target, method, delta, omega, layer, normalise), compute)
