"""Stage-by-stage CNN backbones for CRA-SMRA.

CRA-SMRA needs the backbone *split into its five stages*, because the input of stage l+1 is not the output of
stage l but its channel-suppressed version ``X_s`` (CRAM in docs/methods/cra_smra.md). timm's
``forward_intermediates`` only reads features out, so instead :class:`StageBackbone` re-registers the source
network's own children under their own names and runs them stage by stage. Because the names are unchanged,
a plain torchvision (or timm ResNet) state dict loads into it with no key map.

Stage split (stride in brackets; ResNet50 channels 64/256/512/1024/2048):
- ResNet (torchvision ``resnet18/34/50/101``, timm ``ResNet`` for ``resnet_tiny``): stage 1 = stem
  (conv1, bn1, relu, maxpool) [4], stage 2..5 = layer1..layer4 [4, 8, 16, 32].
- DenseNet161 (torchvision): stage 1 = conv0..pool0 [4], stage 2 = denseblock1 [4], stage 3 = transition1 +
  denseblock2 [8], stage 4 = transition2 + denseblock3 [16], stage 5 = transition3 + denseblock4 + norm5 + ReLU
  [32]. The transitions open a stage, as ResNet's strided first block does, so strides match ResNet's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from fgvc_core.errors import ConfigError


@dataclass(frozen=True)
class BackboneSpec:
    """What the model needs to know about a backbone before running it.

    Attributes:
        name: the ``backbone`` option value.
        channels: output channels of stages 1..5.
        strides: output strides of stages 1..5 (input pixels per feature cell).
        stage_paths: module paths (relative to the backbone) that each stage runs, in order.
    """

    name: str
    channels: tuple[int, int, int, int, int]
    strides: tuple[int, int, int, int, int]
    stage_paths: tuple[tuple[str, ...], ...]


_STRIDES = (4, 4, 8, 16, 32)
_TV_RESNET_PATHS = (("conv1", "bn1", "relu", "maxpool"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))
_TIMM_RESNET_PATHS = (("conv1", "bn1", "act1", "maxpool"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))
_DENSENET_PATHS = (
    ("features.conv0", "features.norm0", "features.relu0", "features.pool0"),
    ("features.denseblock1",),
    ("features.transition1", "features.denseblock2"),
    ("features.transition2", "features.denseblock3"),
    ("features.transition3", "features.denseblock4", "features.norm5", "final_relu"),
)

# resnet_tiny: a timm ResNet with BasicBlocks, one block per stage and half of ResNet18's widths (~1.25M
# parameters; timm keeps the 64-channel stem): trains on a 2-core CPU at 224 px in minutes, ~2.5 MB in fp16.
TINY_CHANNELS = (32, 64, 128, 256)


def _tv(builder_name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision.models as tvm

        return getattr(tvm, builder_name)(weights=None)  # never download: weights come from `pretrained` files

    return build


def resnet_tiny() -> nn.Module:
    """The demo ResNet (random init); RAMS-Trans's hybrid patch embedding reuses its stages 1-4."""
    from timm.models.resnet import BasicBlock, ResNet

    # timm's ResNet keeps torchvision's module names (conv1/bn1/layerN/...), so the two share state-dict keys.
    return ResNet(block=BasicBlock, layers=(1, 1, 1, 1), channels=TINY_CHANNELS, num_classes=0)


_SPECS: dict[str, tuple[BackboneSpec, Callable[[], nn.Module]]] = {
    "resnet_tiny": (BackboneSpec("resnet_tiny", (64, 32, 64, 128, 256), _STRIDES, _TIMM_RESNET_PATHS), resnet_tiny),
    "resnet18": (BackboneSpec("resnet18", (64, 64, 128, 256, 512), _STRIDES, _TV_RESNET_PATHS), _tv("resnet18")),
    "resnet34": (BackboneSpec("resnet34", (64, 64, 128, 256, 512), _STRIDES, _TV_RESNET_PATHS), _tv("resnet34")),
    "resnet50": (BackboneSpec("resnet50", (64, 256, 512, 1024, 2048), _STRIDES, _TV_RESNET_PATHS), _tv("resnet50")),
    "resnet101": (
        BackboneSpec("resnet101", (64, 256, 512, 1024, 2048), _STRIDES, _TV_RESNET_PATHS),
        _tv("resnet101"),
    ),
    "densenet161": (
        BackboneSpec("densenet161", (96, 384, 768, 2112, 2208), _STRIDES, _DENSENET_PATHS),
        _tv("densenet161"),
    ),
}

BACKBONES: tuple[str, ...] = tuple(_SPECS)

# torchvision's 2017 DenseNet files name layers "norm.1" instead of "norm1"; torchvision fixes them on load with
# this pattern, and so do we, so that those files load too.
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


class StageBackbone(nn.Module):
    """A CNN whose five stages can be run one at a time (``run_stage``), with the source model's module names."""

    def __init__(self, spec: BackboneSpec, net: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        top_level = {path.split(".")[0] for paths in spec.stage_paths for path in paths}
        for name in sorted(top_level):
            if name == "final_relu":
                # torchvision's DenseNet applies this ReLU functionally after `features`; a parameter-free module
                # keeps stage 5 non-negative like ResNet's and adds no state-dict key.
                self.final_relu = nn.ReLU()
            else:
                self.add_module(name, getattr(net, name))

    @property
    def channels(self) -> tuple[int, ...]:
        return self.spec.channels

    def run_stage(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        """Run stage ``stage`` (1..5) on ``x``."""
        for path in self.spec.stage_paths[stage - 1]:
            x = self.get_submodule(path)(x)
        return x

    def stage_modules(self, stage: int) -> list[nn.Module]:
        """The modules stage ``stage`` runs (for tests and hooks owned by callers)."""
        return [self.get_submodule(path) for path in self.spec.stage_paths[stage - 1]]

    def stage_parameters_and_buffers(self, stages: tuple[int, ...]) -> list[torch.Tensor]:
        """Every parameter and buffer the given stages use (identifies the weights a cached stage output came from)."""
        tensors: list[torch.Tensor] = []
        for stage in stages:
            for module in self.stage_modules(stage):
                tensors.extend(module.parameters())
                tensors.extend(module.buffers())
        return tensors

    def remap_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename keys of known older layouts (torchvision's 2017 DenseNet files) to this module's names."""
        if self.spec.name != "densenet161":
            return state
        return {_OLD_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}


def build_backbone(name: str) -> StageBackbone:
    """Build backbone ``name`` (one of :data:`BACKBONES`) with random weights.

    Raises:
        ConfigError: unknown name.
    """
    try:
        spec, factory = _SPECS[name]
    except KeyError:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None
    return StageBackbone(spec, factory())
