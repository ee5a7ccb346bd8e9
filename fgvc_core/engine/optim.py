"""SGD over named parameter groups, each with its own learning rate (CRA-SMRA: backbone/SMRAM vs CRAM/heads)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from fgvc_core.errors import ConfigError


def named_parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The model's own grouping (``model.parameter_groups()``) or one group ``"all"``; frozen params are skipped."""
    model = getattr(model, "module", model)
    groups = model.parameter_groups() if hasattr(model, "parameter_groups") else {"all": list(model.parameters())}
    groups = {name: [p for p in params if p.requires_grad] for name, params in groups.items()}
    seen: set[int] = set()
    for name, params in groups.items():
        for p in params:
            if id(p) in seen:
                raise ValueError(f"parameter in group {name!r} also belongs to another group")
            seen.add(id(p))
    if len(seen) != sum(p.requires_grad for p in model.parameters()):
        raise ValueError("the model's parameter_groups() leave trainable parameters out")
    return {name: params for name, params in groups.items() if params}


def resolve_group_lrs(group_names: list[str], lr: float | dict[str, float]) -> dict[str, float]:
    """Map every group to its lr; a mapping may use ``default`` for groups it does not name."""
    if not isinstance(lr, dict):
        return {name: float(lr) for name in group_names}
    unknown = set(lr) - set(group_names) - {"default"}
    if unknown:
        raise ConfigError(f"train.lr names unknown parameter group(s) {sorted(unknown)}; groups: {group_names}")
    missing = [name for name in group_names if name not in lr and "default" not in lr]
    if missing:
        raise ConfigError(f"train.lr gives no learning rate for group(s) {missing} (add them or a 'default')")
    return {name: float(lr.get(name, lr.get("default"))) for name in group_names}


def _no_decay(model: nn.Module) -> set[int]:
    """Ids of parameters exempt from weight decay: biases, norm weights (1-D) and the model's ``no_weight_decay()``
    names (position embedding, CLS tokens), as timm and DeiT do."""
    model = getattr(model, "module", model)
    named = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    return {id(p) for name, p in model.named_parameters() if p.ndim <= 1 or name in named}


def use_fused(train_cfg: dict[str, Any], device: torch.device) -> bool | None:
    """The optimizer's ``fused=`` argument for ``train.fused`` on ``device``.

    ``auto`` fuses on CUDA only (a CPU run keeps PyTorch's default foreach kernel, whose SGD differs from the fused
    one in the last bit); ``true`` asks for the fused kernel on any device that has it (so the CUDA path runs in CI
    on the CPU); ``false`` never fuses. SGD with momentum under ``amp=fp16`` is never fused: torch's fused SGD
    writes an uninitialised momentum buffer on the first step the GradScaler skips (an overflow, routine in the
    first fp16 steps), and the weights blow up on the next step (measured on the CPU kernel, torch 2.15; reported
    for CUDA too). Fused AdamW honours the skip.
    """
    fused = train_cfg.get("fused", "auto")
    momentum_sgd = train_cfg.get("optimizer", "sgd") == "sgd" and train_cfg.get("momentum", 0) > 0
    sgd_under_scaler = momentum_sgd and train_cfg.get("amp") == "fp16"
    if sgd_under_scaler:
        if fused is True:
            raise ConfigError(
                "train.fused=true cannot be combined with train.amp=fp16 and SGD with momentum: torch's fused SGD "
                "corrupts its momentum on the steps the fp16 GradScaler skips; use amp=bf16, optimizer=adamw or "
                "fused=auto"
            )
        return None
    if fused == "auto":
        return True if device.type == "cuda" else None
    return True if fused else None


def build_optimizer(model: nn.Module, train_cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD with momentum (the papers) or AdamW, per-group lr, no decay on biases/norms/tokens, fused as
    ``train.fused`` says (default: on CUDA)."""
    groups = named_parameter_groups(model)
    lrs = resolve_group_lrs(list(groups), train_cfg["lr"])
    exempt = _no_decay(model)
    param_groups = []
    for name, params in groups.items():
        for decay in (True, False):
            chosen = [p for p in params if (id(p) not in exempt) == decay]
            if chosen:
                wd = train_cfg["weight_decay"] if decay else 0.0
                param_groups.append({"params": chosen, "lr": lrs[name], "weight_decay": wd, "name": name})
    device = next(iter(groups.values()))[0].device
    fused = use_fused(train_cfg, device)
    if fused:
        check_fusable([p for params in groups.values() for p in params])
    if train_cfg.get("optimizer", "sgd") == "adamw":
        return torch.optim.AdamW(param_groups, lr=max(lrs.values()), fused=fused)
    return torch.optim.SGD(
        param_groups,
        lr=max(lrs.values()),
        momentum=train_cfg["momentum"],
        nesterov=bool(train_cfg["nesterov"]) and train_cfg["momentum"] > 0,
        fused=fused,
    )


def check_fusable(params: list[nn.Parameter]) -> None:
    """Refuse ``fused=True`` now if the kernel cannot take these parameters: torch only checks at the first step,
    where the error would end the run with a traceback instead of one line."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    supported = _get_fused_kernels_supported_devices()
    for p in params:
        if p.device.type not in supported or not torch.is_floating_point(p):
            raise ConfigError(
                f"train.fused=true: the fused optimizer has no kernel for {p.dtype} parameters on {p.device.type} "
                f"(it supports floating point on {', '.join(supported)}); set train.fused=auto"
            )
