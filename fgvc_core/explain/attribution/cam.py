"""Per-stage class activation maps of CRA-SMRA (paper Figs. 4-6) through pytorch-grad-cam.

Design, and why:
- **One logits tensor.** The library expects a model that returns (B, K). :class:`StageCamModel` wraps the
  multi-head model and returns, by default, the mean of the four heads' logits (``output="mean_logits"``);
  ``"log_probs"`` (log of the combined prediction) or one head (``"stage3"``...``"concat"``) can be chosen.
  The default target class is the argmax of the *combined* prediction (mean of the heads' softmaxes).
- **Each stage its own map.** A CAM object given a list of layers averages their maps. Instead one CAM object
  holds the three taps as target layers, and after one forward and one backward the library's per-layer
  computation (``compute_cam_per_layer``) gives one map per stage, without the averaging step.
- **Hooks never touch the shared model.** The wrapper owns fresh ``nn.Identity`` taps that the model's
  ``run_stages(taps=...)`` applies to each stage's map; the library hooks those taps only. The shared model is
  held outside the module tree, so the library's ``model.eval()`` and hook walks cannot reach it.
- **No gradients on the shared weights.** The backward is ``torch.autograd.grad`` with respect to the tap outputs
  (the input is made to require grad so that the taps are on the graph even for frozen weights): no ``.grad`` is
  written to the model's parameters, and concurrent sessions do not race on them.
- Which map a tap sits on (``layer``): ``"enhanced"`` (default), X_e after the Conv_layer, the C_a-channel map each
  stage head pools, which is what the paper visualises; or ``"stage"``, the backbone stage output X.

CAMs need gradients: the call enables them itself, so it also works inside a caller's ``torch.no_grad()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FinerWeightedTarget

from fgvc_core.errors import ConfigError
from fgvc_core.explain.attribution.methods import CNN, cam_class, methods_for
from fgvc_core.models.cra_smra.model import CRAM_STAGES

# The CNN rows of the one CAM table (labels, costs and library classes live there).
CAM_METHODS: tuple[str, ...] = methods_for(CNN)
CAM_LAYERS: tuple[str, ...] = ("enhanced", "stage")
CAM_OUTPUTS: tuple[str, ...] = ("mean_logits", "log_probs", "stage3", "stage4", "stage5", "concat")
CAM_STAGES: tuple[int, ...] = CRAM_STAGES  # the stages CRA-SMRA taps, classifies and re-attends
CAM_NORMALISATIONS: tuple[str, ...] = ("per_map", "shared")
FINER_COMPARISONS = 3  # FinerCAM compares the target with this many classes of the closest scores (library default)


class StageCamModel(nn.Module):
    """A per-request view of a CRA-SMRA model that pytorch-grad-cam can hook: one (B, K) output, own taps.

    Args:
        model: the (possibly shared) CRA-SMRA model; it is not registered as a submodule.
        stages: the stages to tap (3, 4, 5).
        layer: ``"enhanced"`` or ``"stage"`` (see the module docstring).
        output: which (B, K) tensor the CAM explains (see ``CAM_OUTPUTS``).
        delta: δ override for the pass (None: the model's).
        omega: ω override for the pass (None: the model's).
    """

    def __init__(
        self,
        model: nn.Module,
        stages: Sequence[int] = CAM_STAGES,
        layer: str = "enhanced",
        output: str = "mean_logits",
        delta: float | None = None,
        omega: float | None = None,
    ) -> None:
        super().__init__()
        object.__setattr__(self, "shared_model", model)  # plain attribute: outside this module's tree
        self.taps = nn.ModuleDict({str(s): nn.Identity() for s in stages})
        # pytorch-grad-cam reads the device from the first parameter of the module it is given.
        self.device_anchor = nn.Parameter(torch.empty(0, device=next(model.parameters()).device), requires_grad=False)
        self.layer, self.output, self.delta, self.omega = layer, output, delta, omega
        self.tap_outputs: dict[int, torch.Tensor] = {}
        self.combined_probs: torch.Tensor | None = None  # of the last forward, to pick the default target

    def _tap(self, stage: int):
        def apply(t: torch.Tensor) -> torch.Tensor:
            out = self.taps[str(stage)](t)
            self.tap_outputs[stage] = out
            return out

        return apply

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device_anchor.device)
        if torch.is_grad_enabled():
            x = x.detach().requires_grad_(True)  # puts the taps on the graph even if the weights are frozen
        taps = {f"{self.layer}{s}": self._tap(s) for s in sorted(int(k) for k in self.taps)}
        run = self.shared_model.run_stages(x, delta=self.delta, omega=self.omega, taps=taps)
        self.combined_probs = run.probs.detach()
        if self.output == "mean_logits":
            return torch.stack([run.logits[name] for name in self.shared_model.head_names]).mean(dim=0)
        if self.output == "log_probs":
            return run.probs.clamp_min(torch.finfo(run.probs.dtype).tiny).log()
        return run.logits[self.output]


def _target_classes(target_class: int | Sequence[int] | None, default: torch.Tensor, batch: int) -> list[int]:
    if target_class is None:
        return [int(c) for c in default.argmax(dim=-1)]
    classes = [int(target_class)] * batch if isinstance(target_class, (int, np.integer)) else list(target_class)
    if len(classes) != batch:
        raise ConfigError(f"target_class has {len(classes)} entries for a batch of {batch}")
    num_classes = default.shape[-1]
    if any(not 0 <= int(c) < num_classes for c in classes):
        raise ConfigError(f"target_class must lie in [0, {num_classes - 1}], got {classes}")
    return [int(c) for c in classes]


def _targets(method: str, classes: list[int], outputs: torch.Tensor) -> list:
    if method != "finercam":
        return [ClassifierOutputTarget(c) for c in classes]
    # FinerCAM's rule: compare the target with the classes whose scores are closest to its own.
    scores = outputs.detach()
    targets = []
    for row, c in zip(scores, classes):
        order = (row - row[c]).abs().argsort().tolist()
        others = [k for k in order if k != c][:FINER_COMPARISONS]
        targets.append(FinerWeightedTarget(c, others, alpha=1.0))
    return targets


def _check(model: nn.Module, x: torch.Tensor, method: str, stages: Sequence[int], layer: str, output: str) -> None:
    if not hasattr(model, "run_stages"):
        raise ConfigError(f"stage_cams needs a CRA-SMRA model, got {type(model).__name__}")
    if model.training:
        raise ConfigError("stage_cams explains the test-time model: call model.eval() first")
    if method not in CAM_METHODS:
        raise ConfigError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
    if not stages or any(s not in CAM_STAGES for s in stages) or len(set(stages)) != len(stages):
        raise ConfigError(f"stages must be distinct values among {CAM_STAGES}, got {tuple(stages)}")
    if layer not in CAM_LAYERS:
        raise ConfigError(f"unknown CAM layer {layer!r}; choose one of {', '.join(CAM_LAYERS)}")
    if output not in CAM_OUTPUTS:
        raise ConfigError(f"unknown CAM output {output!r}; choose one of {', '.join(CAM_OUTPUTS)}")
    if x.ndim != 4:
        raise ConfigError(f"x must be a (B, 3, H, W) batch, got shape {tuple(x.shape)}")


def stage_cams(
    model: nn.Module,
    x: torch.Tensor,
    target_class: int | Sequence[int] | None = None,
    method: str = "gradcam",
    stages: Sequence[int] = CAM_STAGES,
    delta: float | None = None,
    omega: float | None = None,
    layer: str = "enhanced",
    output: str = "mean_logits",
    eigen_smooth: bool = False,
    normalise: str = "per_map",
) -> dict[int, np.ndarray]:
    """One CAM per stage, from one forward and one backward pass.

    Args:
        model: a CRA-SMRA model in eval mode; it is not altered (no hooks, no mode flips, no ``.grad``).
        x: images (B, 3, H, W), normalised as the model expects.
        target_class: class to explain, one per batch or per image; default the combined prediction's argmax.
        method: one of :data:`CAM_METHODS` (the ``"cnn"`` rows of ``methods.CAM_TABLE``).
        stages: which of stages 3, 4, 5.
        delta: δ override (None: the model's), so maps can follow the δ slider.
        omega: ω override (None: the model's).
        layer: ``"enhanced"`` (X_e after the Conv_layer, default) or ``"stage"`` (the backbone output X).
        output: what the CAM explains: ``"mean_logits"`` (default), ``"log_probs"`` or one head's name.
        eigen_smooth: the library's first-principal-component smoothing.
        normalise: ``"per_map"`` (default, the library's): each map min-max scaled to [0, 1] on its own, so a weak
            stage looks as strong as the strongest; ``"shared"``: the raw (ReLU'd) maps divided by one common
            scale, the largest raw value over all the stages of that image, so the stages compare on one scale.

    Returns:
        ``{stage: (B, H, W) float32 array in [0, 1]}``, resized to the input.

    Raises:
        ConfigError: invalid option, or the model is in training mode.
    """
    _check(model, x, method, stages, layer, output)
    if normalise not in CAM_NORMALISATIONS:
        raise ConfigError(f"unknown normalise {normalise!r}; choose one of {', '.join(CAM_NORMALISATIONS)}")
    stages = sorted(stages)  # taps fire in forward order, and the library pairs layers with activations by order
    wrapper = StageCamModel(model, stages, layer, output, delta, omega)
    layers = [wrapper.taps[str(s)] for s in stages]
    with torch.enable_grad(), cam_class(method)(model=wrapper, target_layers=layers) as cam:
        try:
            base = getattr(cam, "base_cam", cam)
            if normalise == "shared":
                raw = _per_layer_cams(cam, wrapper, x, stages, target_class, method, eigen_smooth, raw=True)
                return dict(zip(stages, _shared_scale(raw, base.get_target_width_height(x))))
            per_layer = _per_layer_cams(cam, wrapper, x, stages, target_class, method, eigen_smooth)
            # The library's own last step, applied to one layer at a time (the same result as a CAM object with
            # that single layer): it re-scales each resized map to [0, 1].
            maps = {s: base.aggregate_multi_layers([per_layer[i]]) for i, s in enumerate(stages)}
        except IndexError as exc:  # the library's __exit__ would swallow an IndexError with a print
            raise RuntimeError(f"CAM failed: {exc}") from exc
    return {s: np.clip(m, 0.0, 1.0).astype(np.float32) for s, m in maps.items()}


def _shared_scale(raw: list[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    """Raw (B, h, w) maps resized to ``size`` (W, H), then divided by one scale per image: their common max.

    The library's per-map result is the resized raw map min-max scaled on its own, so a shared map equals the
    per-map one times that map's (max − min), plus its min, over the common max: for a map whose min is 0, the
    per-map map times its max over the common max. The strongest stage of each image peaks at exactly 1.
    """
    resized = [np.stack([cv2.resize(np.float32(img), size) for img in m]) for m in raw]
    common = np.max([m.reshape(m.shape[0], -1).max(axis=1) for m in resized], axis=0)  # (B,)
    common = np.where(common > 0, common, 1.0)  # every map of the image is zero: they stay zero
    return [np.clip(m / common[:, None, None], 0.0, 1.0).astype(np.float32) for m in resized]


def _raw_cam_per_layer(base, x: torch.Tensor, targets, eigen_smooth: bool) -> list[np.ndarray]:
    """The library's ``compute_cam_per_layer`` without its per-map min-max scaling and resize: (B, h, w) each."""
    recorder = base.activations_and_grads
    activations = [a.cpu().data.numpy() if base.detach else a for a in recorder.activations]
    grads = [g.cpu().data.numpy() if base.detach else g for g in recorder.gradients]
    maps = []
    for i, layer in enumerate(base.target_layers):
        act = activations[i] if i < len(activations) else None
        grad = grads[i] if i < len(grads) else None
        maps.append(np.maximum(base.get_cam_image(x, layer, targets, act, grad, eigen_smooth), 0))
    return maps


def _per_layer_cams(
    cam, wrapper: StageCamModel, x, stages, target_class, method, eigen_smooth, raw: bool = False
) -> list[np.ndarray]:
    base = getattr(cam, "base_cam", cam)  # FinerCAM delegates to a base CAM object
    recorder = base.activations_and_grads
    with torch.set_grad_enabled(base.uses_gradients):
        outputs = recorder(x)  # forward: the library's hooks on the taps record the activations
    classes = _target_classes(target_class, wrapper.combined_probs, x.shape[0])
    targets = _targets(method, classes, outputs)
    if base.uses_gradients:
        loss = sum(target(out) for target, out in zip(targets, outputs))
        tapped = [wrapper.tap_outputs[s] for s in stages]
        grads = torch.autograd.grad(loss, tapped, allow_unused=True)
        # A stage that does not feed the explained output (e.g. stage 5 for output="stage3") has no gradient.
        grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, tapped)]
        # Set in stage order (the hook-collected list follows the engine's visiting order).
        recorder.gradients = [g.detach().cpu() for g in grads]
    if raw:
        return _raw_cam_per_layer(base, x.to(wrapper.device_anchor.device), targets, eigen_smooth)
    return base.compute_cam_per_layer(x.to(wrapper.device_anchor.device), targets, eigen_smooth)
