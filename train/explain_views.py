"""The views ``train.explain`` exports per image: one ``View`` per visualisation, for each model.

A view is a name (the file stem), a title, an optional matplotlib figure (-> PNG) and plotly figures (-> the
image's HTML page). Every map explains the same class, the combined prediction's top-1, so that the maps of one
image can be compared; the titles say which class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from matplotlib.figure import Figure

from fgvc_core.errors import ConfigError
from fgvc_core.explain.rendering import figures, plots
from fgvc_core.explain.rendering.figure_utils import class_name, format_prob
from fgvc_core.models.registry import get_spec, resolve


@dataclass
class View:
    """One exported visualisation of one image."""

    name: str  # file stem: <name>.png
    title: str
    figure: Figure | None = None
    plots: list[Any] = field(default_factory=list)  # plotly figures for the HTML page


@dataclass(frozen=True)
class ExplainOptions:
    """What the user chose on the command line (None: the checkpoint's own value)."""

    cam_method: str = "gradcam"
    threshold: float | list[float] | None = None
    delta: float | None = None
    omega: float | None = None
    topk: int = 5
    channel_k: int = 4


def cam_methods(model_name: str) -> tuple[str, ...]:
    """The CAM methods the model's CAM function accepts (its spec's ``cam_methods``)."""
    return get_spec(model_name).cam_methods


# ExplainOptions field -> the --flag that sets it; a model's trace takes only its spec's trace_options.
_TRACE_FLAGS = {"threshold": "--threshold", "delta": "--delta", "omega": "--omega"}


def check_options(model: Any, options: ExplainOptions) -> list[str]:
    """Validate the options against the model before any image is read; returns notes on ignored options."""
    spec = get_spec(model.model_name)
    methods = spec.cam_methods
    if methods and options.cam_method not in methods:
        raise ConfigError(f"--cam-method for {spec.title} must be one of {', '.join(methods)}")
    ignored = [flag for name, flag in _TRACE_FLAGS.items() if getattr(options, name) is not None]
    ignored = [flag for flag in ignored if flag.removeprefix("--") not in spec.trace_options]
    if ignored:
        takes = ", ".join(f"--{name}" for name in spec.trace_options if name in _TRACE_FLAGS) or "none of them"
        return [f"{'/'.join(ignored)} ignored for {spec.title} (its trace takes {takes})"]
    return []


def image_views(
    model: Any, meta: Mapping[str, Any], x: torch.Tensor, image: Any, options: ExplainOptions
) -> tuple[list[View], dict[str, Any]]:
    """All views of one image ``x`` (1, C, H, W) and a summary (top-1 class and probability).

    The views come from the model spec's ``export_views``; a model without them gets :func:`generic_views`.
    """
    target = get_spec(model.model_name).export_views
    views_of = generic_views if target is None else resolve(target)
    views, probs = views_of(model, meta, x, image, options)
    top = int(probs.argmax())
    summary = {"top1": class_name(meta.get("classes"), top), "prob": float(probs[top]), "class_index": top}
    return views, summary


def generic_views(model: Any, meta: Mapping[str, Any], x: torch.Tensor, image: Any, options: ExplainOptions):
    """What every model offers: the prediction and its trace's default map."""
    names, pp = meta.get("classes"), meta.get("preprocess")
    trace = model.trace(x)
    views = [_prediction_view(trace.head_probs, trace.probs, names, options.topk)]
    map_, name = trace.default_map(0)
    figure = figures.rollout_figure(x[0], map_, name, preprocess=pp)
    views.append(View("default_map", name, figure, [plots.heatmap(map_, name, zmin=0, zmax=1)]))
    return views, trace.probs[0]


def _prediction_view(head_probs: dict[str, torch.Tensor], probs: torch.Tensor, names, k: int) -> View:
    return View(
        "prediction",
        "combined prediction",
        figures.prediction_figure(probs, names, k, title="combined"),
        [plots.topk_bar(head_probs, names, k, combined=probs)],
    )


def rams_trans_views(model: Any, meta: Mapping[str, Any], x: torch.Tensor, image: Any, options: ExplainOptions):
    """Prediction, DPPM, and per scale: rollout, per-layer attention, gradient rollout and a ViT CAM."""
    from fgvc_core.explain.attribution.vit_cam import rams_trans_cam
    from fgvc_core.ops.rollout import gradient_rollout

    names, pp = meta.get("classes"), meta.get("preprocess")
    trace = model.trace(x, threshold=options.threshold, original_size=image.size, preprocess=pp)
    target = int(trace.probs[0].argmax())
    explained = f"class {class_name(names, target)}"
    views = [
        _prediction_view({s.head_name: s.probs for s in trace.scales}, trace.probs, names, options.topk),
        View("dppm", "DPPM: box, rollout, mask and prediction per scale",
             figures.dppm_figure(trace, image, names, k=min(3, options.topk), preprocess=pp)),
    ]  # fmt: skip
    query = trace.options["rollout_query"]
    for s, scale in enumerate(trace.scales):
        crop, n = scale.crop[:1], s + 1
        grid = tuple(scale.rollout.shape[-2:])
        title = f"scale {n} attention rollout ({query}, {trace.options['head_fusion']})"
        views.append(
            View(f"rollout_scale{n}", title, figures.rollout_figure(crop[0], scale.rollout[0], title, pp),
                 [plots.heatmap(scale.rollout[0], title)])
        )  # fmt: skip
        views.append(
            View(f"attention_scale{n}", f"scale {n}: CLS attention per layer and head",
                 figures.attention_layers_figure(trace, s))
        )  # fmt: skip
        attentions, gradients, _ = model.attention_gradients(crop, target=target, scale=s)
        grad_map = gradient_rollout(attentions, gradients, query=query)[0].view(grid)
        title = f"scale {n} gradient rollout, {explained}"
        views.append(
            View(f"gradient_rollout_scale{n}", title, figures.rollout_figure(crop[0], grad_map, title, pp),
                 [plots.heatmap(grad_map, title)])
        )  # fmt: skip
        cam = rams_trans_cam(model, crop, target=target, scale=s, method=options.cam_method)[0]
        title = f"scale {n} ViT {options.cam_method}, {explained}"
        views.append(
            View(f"vit_cam_scale{n}", title, figures.rollout_figure(crop[0], cam, title, pp),
                 [plots.heatmap(cam, title, zmin=0, zmax=1)])
        )  # fmt: skip
    return views, trace.probs[0]


def cra_smra_views(model: Any, meta: Mapping[str, Any], x: torch.Tensor, image: Any, options: ExplainOptions):
    """Prediction, per-stage CAMs, and per stage: CRAM channel bars and channel maps; SMRAM maps."""
    from fgvc_core.explain.attribution.cam import stage_cams

    names, pp = meta.get("classes"), meta.get("preprocess")
    trace = model.trace(x, delta=options.delta, omega=options.omega)
    target = int(trace.probs[0].argmax())
    views = [_prediction_view(trace.head_probs, trace.probs, names, options.topk)]
    cams = stage_cams(model, x, target_class=target, method=options.cam_method, delta=options.delta,
                      omega=options.omega)  # fmt: skip
    knobs = "" if trace.delta is None else f", δ={trace.delta:g}, ω={trace.omega:g}"
    title = f"per-stage {options.cam_method}, class {class_name(names, target)}{knobs}"
    views.append(
        View("stage_cam", title, figures.stage_cam_figure(x[0], cams, preprocess=pp),
             [plots.heatmap(m[0], f"stage {s} {options.cam_method}", zmin=0, zmax=1) for s, m in cams.items()])
    )  # fmt: skip
    for st in trace.stages:
        s = st.stage
        if st.importance is not None:
            views.append(
                View(f"cram_stage{s}", f"stage {s} CRAM: I, I*, S",
                     figures.cram_channels_figure(trace, s),
                     [plots.channel_bars(st.importance, st.importance_softmax, st.suppression,
                                         st.suppressed_channels, sort=True, delta=trace.delta)])
            )  # fmt: skip
        source = "reweighted" if st.importance is not None else "stage"
        k = min(options.channel_k, st.stage_output.shape[1] // 2)
        views.append(
            View(f"channel_maps_stage{s}", f"stage {s} channel maps ({source})",
                 figures.channel_maps_figure(trace, s, k=k, source=source))
        )  # fmt: skip
    if trace.smram_maps is not None:
        maps = trace.smram_maps[0]
        views.append(
            View("smram", f"SMRAM maps, L_div = {float(trace.l_div_per_image[0]):.4f}", figures.smram_figure(trace),
                 [plots.heatmap(m, f"SMRAM stage {st.stage}") for m, st in zip(maps, trace.stages)])
        )  # fmt: skip
    return views, trace.probs[0]


def describe(summary: Mapping[str, Any]) -> str:
    return f"{summary['top1']} {format_prob(summary['prob'])}"
