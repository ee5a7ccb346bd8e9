"""CRA-SMRA (Wang et al., Neural Processing Letters 2025): the model, its builder and its live-δ trace.

One forward path, :meth:`CraSmra.run_stages`, serves ``forward`` (training and test), ``trace`` (with optional
δ/ω overrides and a stage-3 cache) and the per-stage CAM wrapper (with per-request taps). Overrides and taps are
call arguments, never attributes set on the model, so a model cached by the app can be traced by several
sessions at once.
"""

from __future__ import annotations

import copy
import math
import numbers
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from fgvc_core.errors import CheckpointError, ConfigError
from fgvc_core.models.base import FGVCModel, ModelOutput
from fgvc_core.models.cra_smra.backbones import BACKBONES, build_backbone
from fgvc_core.models.cra_smra.channel_attention import VARIANTS, create_channel_attention, variant_parts
from fgvc_core.models.cra_smra.cram import SUPPRESS_FROM
from fgvc_core.models.cra_smra.heads import Classifier, conv_block, global_max_pool
from fgvc_core.models.cra_smra.smram import SMRAM_RESIZE, Smram, diversity_loss
from fgvc_core.models.cra_smra.trace import (
    CraSmraCache,
    CraSmraTrace,
    ReattentionOutput,
    input_fingerprint,
    stage_trace,
    to_cpu,
)
from fgvc_core.models.weights import LoadReport, load_matching, read_state_dict

HEAD_NAMES: tuple[str, ...] = ("stage3", "stage4", "stage5", "concat")
PLAIN_HEAD = "plain"  # the ``plain`` variant's one head: global average pool of stage 5 -> Linear (torchvision's)
CRAM_STAGES: tuple[int, ...] = (3, 4, 5)
# Where a caller may tap a stage: "stage" = the backbone stage output X, "enhanced" = X_e after the Conv_layer.
TAP_POINTS: tuple[str, ...] = ("stage", "enhanced")
Tap = Callable[[torch.Tensor], torch.Tensor]


class StagePass(NamedTuple):
    """One CRAM stage of :meth:`CraSmra.run_stages` (tensors still on the graph)."""

    stage: int
    stage_output: torch.Tensor
    reattention: ReattentionOutput
    enhanced: torch.Tensor
    pooled: torch.Tensor


class StagesRun(NamedTuple):
    """What :meth:`CraSmra.run_stages` returns. ``l_div`` is per image (B,) and None unless SMRAM ran."""

    stages: tuple[StagePass, ...]
    logits: dict[str, torch.Tensor]
    probs: torch.Tensor
    smram_maps: torch.Tensor | None
    l_div: torch.Tensor | None


def _number(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must be in {bracket}{low:g}, {high:g}], got {value!r}")
    return float(value)


def check_delta(value: Any) -> float:
    """δ (which channels CRAM suppresses) as a float in (0, 1], else ConfigError."""
    return _number("delta (δ)", value, 0.0, 1.0, low_open=True)


def check_omega(value: Any) -> float:
    """ω (how strongly CRAM suppresses) as a float in [0, 1], else ConfigError."""
    return _number("omega (ω)", value, 0.0, 1.0)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value


def _apply_tap(taps: Mapping[str, Tap], name: str, x: torch.Tensor) -> torch.Tensor:
    tap = taps.get(name)
    return x if tap is None else tap(x)


class CraSmra(FGVCModel):
    """Multi-stage CNN with channel re-attention after stages 3-5, four heads and (training only) SMRAM.

    Build it with :func:`build_cra_smra` (or ``build_model("cra_smra", ...)``), which validates the options.
    """

    model_name = "cra_smra"
    head_names = HEAD_NAMES

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        cfg = self.config
        kind, with_smram = variant_parts(cfg["variant"])
        self.backbone = build_backbone(cfg["backbone"])
        spec = self.backbone.spec
        channels = [spec.channels[s - 1] for s in CRAM_STAGES]
        width = cfg["conv_channels"]
        variant, reduction = cfg["variant"], cfg["reduction"]
        self.reattention = nn.ModuleList(
            create_channel_attention(variant, c, reduction, cfg["suppress_from"]) for c in channels
        )
        self.plain = variant == "plain"
        if self.plain:  # the paper's "ResNet50" row: the bare backbone and one linear head
            self.head_names = (PLAIN_HEAD,)
            self.conv_blocks = nn.ModuleList()
            self.stage_heads = nn.ModuleList()
            self.concat_head = nn.Linear(channels[-1], cfg["num_classes"])
        else:
            self.conv_blocks = nn.ModuleList(conv_block(c, cfg["conv_mid_channels"], width) for c in channels)
            self.stage_heads = nn.ModuleList(
                Classifier(width, cfg["head_hidden"], cfg["num_classes"]) for _ in channels
            )
            self.concat_head = Classifier(len(channels) * width, cfg["head_hidden"], cfg["num_classes"])
        strides = [spec.strides[s - 1] for s in CRAM_STAGES]
        self.smram = Smram(width, strides, cfg["smram_resize"]) if with_smram else None
        self.uses_cram = kind == "cram"
        self.pretrained_report: LoadReport | None = None
        self._instance_id = uuid.uuid4().hex  # identifies this instance in trace caches (id() can be reused)

    # ---------------------------------------------------------------- the one forward path
    def run_stages(
        self,
        x: torch.Tensor,
        *,
        delta: float | None = None,
        omega: float | None = None,
        taps: Mapping[str, Tap] | None = None,
        stage3: torch.Tensor | None = None,
        enhanced3: torch.Tensor | None = None,
        with_smram: bool = False,
    ) -> StagesRun:
        """Run the network, stage by stage, in the module's current mode.

        Args:
            x: images (B, 3, H, W); unused when ``stage3`` is given.
            delta: δ for every CRAM (default: the build option); not validated here, ``trace`` does that.
            omega: ω for every CRAM (default: the build option).
            taps: optional callables ``f(t) -> t`` applied to (and replacing) a stage's map, keyed
                ``"stage3"``..``"stage5"`` (the backbone output X) or ``"enhanced3"``..``"enhanced5"`` (X_e after
                the Conv_layer). The CAM wrapper passes its own ``nn.Identity`` modules here, so that hooks live
                on per-request modules and never on this (possibly shared) model.
            stage3: a cached stage-3 output X; stages 1-3 are then skipped.
            enhanced3: with ``stage3``, the cached stage-3 Conv_layer output (X_e does not depend on δ/ω, and this
                3x3 conv at stride 8 is the costliest single step of a δ update); it is then not recomputed.
            with_smram: also compute SMRAM's maps and the per-image ``L_div`` (needs the ``cram_smram`` variant).
        """
        delta = self.config["delta"] if delta is None else delta
        omega = self.config["omega"] if omega is None else omega
        taps = taps or {}
        if enhanced3 is not None and (stage3 is None or taps):
            raise ConfigError("enhanced3 is a cache companion of stage3 and cannot be combined with taps")
        unknown = set(taps) - {f"{p}{s}" for p in TAP_POINTS for s in CRAM_STAGES}
        if unknown:
            raise ConfigError(f"unknown tap point(s) {sorted(unknown)}; use stage3..5 or enhanced3..5")
        h = stage3
        if h is None:
            h = x
            for stage in range(1, CRAM_STAGES[0] + 1):
                h = self.backbone.run_stage(stage, h)
        passes = []
        for i, stage in enumerate(CRAM_STAGES):
            if i > 0:
                h = self.backbone.run_stage(stage, h)  # h is the previous stage's X_s
            h = _apply_tap(taps, f"stage{stage}", h)
            out = self.reattention[i](h, delta=delta, omega=omega)
            cached = enhanced3 if i == 0 else None
            if cached is not None:
                enhanced = cached
            else:
                conv = nn.Identity() if self.plain else self.conv_blocks[i]
                enhanced = _apply_tap(taps, f"enhanced{stage}", conv(out.enhanced))
            pooled = enhanced.mean((2, 3)) if self.plain else global_max_pool(enhanced)
            passes.append(StagePass(stage, h, out, enhanced, pooled))
            h = out.suppressed
        if self.plain:
            logits = {PLAIN_HEAD: self.concat_head(passes[-1].pooled)}
        else:
            logits = {f"stage{p.stage}": head(p.pooled) for p, head in zip(passes, self.stage_heads)}
            logits["concat"] = self.concat_head(torch.cat([p.pooled for p in passes], dim=1))
        probs = torch.stack([logits[name].softmax(dim=-1) for name in self.head_names]).mean(dim=0)
        maps = l_div = None
        if with_smram and self.smram is not None:
            maps = self.smram([p.enhanced for p in passes])
            l_div = diversity_loss(maps, reduction="none")
        return StagesRun(tuple(passes), logits, probs, maps, l_div)

    # ---------------------------------------------------------------- FGVCModel face
    def forward(self, x: torch.Tensor) -> ModelOutput:
        """Logits of the four heads and the combined probabilities; ``aux["l_div"]`` only in training with SMRAM."""
        run = self.run_stages(x, with_smram=self.training)
        aux = {"l_div": run.l_div.mean()} if run.l_div is not None else {}
        return ModelOutput(logits=run.logits, probs=run.probs, aux=aux)

    def loss(self, output: ModelOutput, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``α·CE(concat) + β·Σ_i CE(stage_i) + γ·L_div`` (the last term only when ``output.aux`` has ``l_div``);
        the ``plain`` variant's loss is the CE of its one head."""
        cfg = self.config
        parts = {f"ce_{name}": F.cross_entropy(output.logits[name], target) for name in self.head_names}
        if self.plain:
            total = parts[f"ce_{PLAIN_HEAD}"]
        else:
            total = cfg["alpha"] * parts["ce_concat"]
            total = total + cfg["beta"] * sum(parts[f"ce_stage{s}"] for s in CRAM_STAGES)
        if "l_div" in output.aux:
            parts["l_div"] = output.aux["l_div"]
            total = total + cfg["gamma"] * parts["l_div"]
        logged = {name: float(value.detach()) for name, value in parts.items()}
        logged["total"] = float(total.detach())
        return total, logged

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Combined test-time probabilities (B, K), always with eval-mode BatchNorm and without SMRAM.

        In training mode this runs a private eval-mode copy (slow, rare) instead of flipping ``self.training``.
        """
        model = copy.deepcopy(self).eval() if self.training else self
        return model.run_stages(x).probs

    @torch.no_grad()
    def trace(
        self,
        x: torch.Tensor | None,
        delta: float | None = None,
        omega: float | None = None,
        cache: CraSmraCache | None = None,
    ) -> CraSmraTrace:
        """Every intermediate the app shows, with δ/ω overrides, without altering the model.

        Runs in the module's current mode (the app keeps models in eval mode). SMRAM maps and ``L_div`` are
        computed whenever the variant has SMRAM, for inspection.

        Args:
            x: images (B, 3, H, W); may be None when ``cache`` is given (it holds all that stages 1-3 made of x).
            delta: δ override in (0, 1]; default the build option.
            omega: ω override in [0, 1]; default the build option.
            cache: ``trace.cache`` of an earlier trace of the same ``x`` on this model; stages 1-3 are skipped.

        Raises:
            ConfigError: δ/ω out of range, or a cache of another input, model, mode or weights.
        """
        delta = self.config["delta"] if delta is None else check_delta(delta)
        omega = self.config["omega"] if omega is None else check_omega(omega)
        device = next(self.parameters()).device
        if x is None and cache is None:
            raise ConfigError("trace needs an input x (or cache=an earlier trace's cache)")
        if x is not None:
            x = x.to(device)
        fingerprint = input_fingerprint(x) if x is not None else getattr(cache, "fingerprint", None)
        stage3 = None
        if cache is not None:
            if not isinstance(cache, CraSmraCache):
                raise ConfigError(f"cache must be a CraSmraCache from trace(), got {type(cache).__name__}")
            if (cache.model_key, cache.input_shape, cache.fingerprint) != (
                self._cache_key(),
                tuple(x.shape) if x is not None else cache.input_shape,
                fingerprint,
            ):
                raise ConfigError("this trace cache belongs to another input or model state; trace without it first")
            stage3 = cache.stage3.to(device)
            enhanced3 = None if cache.enhanced3 is None else cache.enhanced3.to(device)
        else:
            enhanced3 = None
        run = self.run_stages(x, delta=delta, omega=omega, stage3=stage3, enhanced3=enhanced3, with_smram=True)
        if cache is None:
            first = run.stages[0]
            cache = CraSmraCache(
                to_cpu(first.stage_output), tuple(x.shape), fingerprint, self._cache_key(), to_cpu(first.enhanced)
            )
        return CraSmraTrace(
            stages=tuple(stage_trace(*p) for p in run.stages),
            logits={name: to_cpu(v) for name, v in run.logits.items()},
            head_probs={name: to_cpu(v.softmax(dim=-1)) for name, v in run.logits.items()},
            probs=to_cpu(run.probs),
            smram_maps=to_cpu(run.smram_maps),
            l_div=None if run.l_div is None else to_cpu(run.l_div.mean()),
            l_div_per_image=to_cpu(run.l_div),
            delta=delta if self.uses_cram else None,
            omega=omega if self.uses_cram else None,
            variant=self.config["variant"],
            cache=cache,
            input_size=tuple(cache.input_shape[-2:]),
        )

    # ---------------------------------------------------------------- weights and training helpers
    def load_backbone_weights(self, path: str | Path) -> LoadReport:
        """Load a local torchvision/timm backbone state dict (``.pth``/``.safetensors``) into the backbone.

        A whole CRA-SMRA state dict also works (its ``backbone.`` part is used). Every backbone weight must be
        found with its shape: a partial match means the file is for another architecture.

        Raises:
            CheckpointError: unreadable file, or weights that do not fit this backbone.
        """
        state = read_state_dict(path)
        if any(key.startswith("backbone.") for key in state):
            state = {key[len("backbone.") :]: v for key, v in state.items() if key.startswith("backbone.")}
        state = self.backbone.remap_state_dict(state)
        report = load_matching(self.backbone, state, source=Path(path).name)
        loaded = set(report.matched)
        missing = [name for name, _ in self.backbone.named_parameters() if name not in loaded]
        if missing:
            total = sum(1 for _ in self.backbone.parameters())
            raise CheckpointError(
                f"{Path(path).name} does not fit backbone {self.config['backbone']!r}: {len(missing)} of {total} "
                f"weights missing or of another shape (e.g. {missing[0]}); pick the matching backbone"
            )
        return report

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``backbone`` (backbone + SMRAM; the paper's lr 2e-4) and ``new`` (channel attention, Conv_layers,
        heads; the paper's lr 6e-3 for CRAM)."""
        backbone = list(self.backbone.parameters())
        if self.smram is not None:
            backbone += list(self.smram.parameters())
        new_parts = (self.reattention, self.conv_blocks, self.stage_heads, self.concat_head)
        new = [p for part in new_parts for p in part.parameters()]
        return {"backbone": backbone, "new": new}

    def _cache_key(self) -> tuple:
        # The cached stage-3 output depends on the stage 1-3 weights and the mode (BatchNorm), its Conv_layer output
        # also on CRAM(3)'s importance MLP and that Conv_layer; tensor versions change with every in-place update
        # (optimizer step, load_state_dict), ids with replaced tensors.
        weights = list(self.backbone.stage_parameters_and_buffers(tuple(range(1, CRAM_STAGES[0] + 1))))
        for module in (self.reattention[0], *self.conv_blocks[:1]):
            weights += [*module.parameters(), *module.buffers()]
        first = weights[0]
        versions = tuple((id(t), t._version) for t in weights)
        return (self._instance_id, self.training, str(first.device), str(first.dtype), versions)


def build_cra_smra(
    num_classes: int,
    backbone: str = "resnet50",
    variant: str = "cram_smram",
    delta: float = 0.9,
    omega: float = 0.5,
    reduction: int = 16,
    conv_channels: int = 1024,
    conv_mid_channels: int = 512,
    head_hidden: int = 512,
    alpha: float = 2.0,
    beta: float = 1.0,
    gamma: float = 1.0,
    smram_resize: str = "avgpool",
    suppress_from: str = "stage",
    pretrained: str | Path | None = None,
    **unknown: Any,
) -> CraSmra:
    """Build CRA-SMRA (defaults: the paper's; see docs/methods/cra_smra.md).

    Args:
        num_classes: K, at least 2.
        backbone: ``resnet_tiny`` (demo), ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``densenet161``.
        variant: ``plain`` (bare backbone + one linear head: the paper's "ResNet50" row), ``base`` (multi-stage
            heads, no channel attention), ``cbam`` (CBAM's channel gate), ``cbam_full`` (channel + spatial gate:
            the paper's "+CBAM" row), ``cram`` or ``cram_smram`` (paper Table 3).
        delta: δ in (0, 1]: CRAM suppresses channels with ``I*_c ≥ δ·max(I*)``.
        omega: ω in [0, 1]: the factor suppressed channels get in ``X_s``.
        reduction: r of the channel MLP.
        conv_channels: C_a, the channels every stage's ``Conv_layer`` outputs.
        conv_mid_channels: the ``Conv_layer``'s 1×1 bottleneck width.
        head_hidden: hidden width of each classifier.
        alpha: weight of CE(concat). beta: weight of each stage CE. gamma: weight of L_div.
        smram_resize: how SMRAM brings stages 3/4 to stage 5's size, ``avgpool`` (default) or ``conv``.
        suppress_from: what CRAM's ``S`` multiplies to give the next stage's input: ``"stage"`` (``X_s = S ⊗ X``,
            default) or ``"enhanced"`` (``X_s = S ⊗ X_e``); the paper's equation is lost (docs/methods/cra_smra.md).
        pretrained: optional local backbone weights file (never downloaded); its load report is kept in
            ``model.pretrained_report``.

    Raises:
        ConfigError: an unknown or invalid option (the message names it).
        CheckpointError: ``pretrained`` cannot be read or does not fit the backbone.
    """
    if unknown:
        raise ConfigError(f"unknown CRA-SMRA option(s): {', '.join(sorted(unknown))}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    config = {
        "num_classes": int(num_classes),
        "backbone": _choice("backbone", backbone, BACKBONES),
        "variant": _choice("variant", variant, VARIANTS),
        "delta": check_delta(delta),
        "omega": check_omega(omega),
        "reduction": _positive_int("reduction", reduction),
        "conv_channels": _positive_int("conv_channels", conv_channels),
        "conv_mid_channels": _positive_int("conv_mid_channels", conv_mid_channels),
        "head_hidden": _positive_int("head_hidden", head_hidden),
        "alpha": _number("alpha", alpha, 0.0, math.inf),
        "beta": _number("beta", beta, 0.0, math.inf),
        "gamma": _number("gamma", gamma, 0.0, math.inf),
        "smram_resize": _choice("smram_resize", smram_resize, SMRAM_RESIZE),
        "suppress_from": _choice("suppress_from", suppress_from, SUPPRESS_FROM),
    }
    model = CraSmra(config)
    if pretrained is not None:
        model.pretrained_report = model.load_backbone_weights(pretrained)
    return model
