"""The code path a CUDA run takes (bf16/fp16 autocast, the fp16 GradScaler, channels_last, the fused optimizer, SDPA
on the gradient path, torch.compile), selected explicitly and run on the CPU, for every registered model.

No GPU is lent to this project's machines, so this is the only place the CUDA branches of the engine execute.
Tolerances (also in docs/ARCHITECTURE.md, "GPU path on CPU"): over 8 SGD steps on one fixed batch, from the same
weights, the first-step loss of the bf16 path is within 1 % of fp32's (only the precision differs) and every later
step's within 10 % (measured: 0.1 % for RAMS-Trans, 5 % for CRA-SMRA, whose BatchNorm amplifies the rounding);
the loss falls below 90 % of its first value on both paths. What this does not show: CUDA kernels (cuDNN, flash
attention, the CUDA fused SGD) and their speed; CPU bf16 autocast covers fewer ops than CUDA's.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import fgvc_core
from fgvc_core.engine import checkpoint as ckpt
from fgvc_core.engine import loop, trainer
from fgvc_core.engine.config import merge_defaults
from fgvc_core.engine.loop import TrainState, autocast, train_one_epoch
from fgvc_core.engine.optim import build_optimizer, use_fused
from fgvc_core.engine.schedule import build_scheduler
from fgvc_core.errors import ConfigError
from fgvc_core.models.registry import list_models
from tests.engine_fixtures import TINY_MODELS, tiny_config

CPU = torch.device("cpu")


# The fp16 scaler starts high enough that every model's first steps overflow in fp16 and are skipped (torch's
# default 2**16 does not overflow the tiny ViT classifier), and low enough that the 8 steps still train.
INIT_SCALE = 2.0**20
STEPS = 8
FIRST_STEP_RTOL = 0.01
TRAJECTORY_RTOL = 0.10
MUST_FALL_TO = 0.9


def _cfg(**kw):
    return {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False, "optimizer": "sgd", **kw}


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return fgvc_core.build_model(name, 4, **{k: v for k, v in TINY_MODELS[name].items() if k != "name"})


def _fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 4, (8,), generator=gen)


def _train(model, amp: str, fused, channels_last: bool, compile_model: bool = False) -> tuple[list[float], list[bool]]:
    """``STEPS`` engine steps on one fixed batch; returns each step's loss and whether the optimizer applied it."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, _cfg(fused=fused, amp=amp))
    scheduler = build_scheduler(optimizer, 1000)
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE) if amp == "fp16" else None
    net = torch.compile(model) if compile_model else model
    state, losses, applied = TrainState(), [], []
    images, targets = _fixed_batch()
    torch.manual_seed(1)
    for _ in range(STEPS):
        scale = scaler.get_scale() if scaler is not None else None
        stats = train_one_epoch(
            net, [(images, targets)], optimizer, scheduler, state, device=CPU, total_steps=1000, amp=amp,
            scaler=scaler, show_progress=False, channels_last=channels_last,
        )  # fmt: skip
        losses.append(stats["loss"])
        applied.append(scaler is None or scaler.get_scale() >= scale)  # a skipped step halves the scale
    return losses, applied


def _assert_matches_fp32(losses: list[float], reference: list[float]) -> None:
    assert losses[0] == pytest.approx(reference[0], rel=FIRST_STEP_RTOL)
    for step, (got, want) in enumerate(zip(losses, reference), 1):
        assert got == pytest.approx(want, rel=TRAJECTORY_RTOL), f"step {step}: {got} vs fp32 {want}"
    assert losses[-1] < MUST_FALL_TO * losses[0] and reference[-1] < MUST_FALL_TO * reference[0]


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # the cuda case only builds the context
@pytest.mark.parametrize(
    ("amp", "device", "enabled", "dtype"),
    [
        ("bf16", "cpu", True, torch.bfloat16),
        ("fp16", "cpu", True, torch.float16),
        ("auto", "cpu", False, None),  # a plain CPU run stays fp32
        ("none", "cpu", False, None),
        ("auto", "cuda", True, torch.bfloat16),
    ],
)
def test_autocast_honours_train_amp_on_every_device(amp, device, enabled, dtype):
    context = autocast(torch.device(device), amp)
    assert isinstance(context, torch.autocast) == enabled
    if enabled:
        assert context.device == device and context.fast_dtype == dtype
    if device == "cpu":
        with context:
            assert torch.is_autocast_enabled("cpu") == enabled


def test_the_fused_optimizer_is_selectable_on_the_cpu():
    model = _model("rams_trans")
    assert build_optimizer(model, _cfg(fused=True)).defaults["fused"] is True
    assert not build_optimizer(model, _cfg(fused="auto")).defaults["fused"]  # the default CPU run: foreach
    assert not build_optimizer(model, _cfg(fused=False)).defaults["fused"]
    assert build_optimizer(model, _cfg(optimizer="adamw", lr=1e-3, fused=True)).defaults["fused"] is True
    assert use_fused(_cfg(fused="auto"), torch.device("cuda")) is True


def test_train_fused_is_validated_and_refused_where_there_is_no_kernel():
    with pytest.raises(ConfigError, match=r"^train\.fused must be auto, true or false, got 'yes'$"):
        merge_defaults({"model": {"name": "rams_trans"}, "train": {"fused": "yes"}})
    with torch.device("meta"):
        model = torch.nn.Linear(3, 2)
    with pytest.raises(ConfigError, match=r"^train\.fused=true: the fused optimizer has no kernel for torch\.float32 "):
        build_optimizer(model, _cfg(fused=True))


def test_sgd_with_momentum_under_the_fp16_scaler_is_never_fused():
    # torch's fused SGD leaves an uninitialised momentum buffer behind a step the GradScaler skips (fp16 overflow):
    # on CUDA, where train.fused=auto fuses, an amp=fp16 run with the papers' SGD would blow up.
    for device in ("cuda", "cpu"):
        assert use_fused(_cfg(fused="auto", amp="fp16"), torch.device(device)) is None
    assert use_fused(_cfg(fused="auto", amp="fp16", optimizer="adamw"), torch.device("cuda")) is True
    assert use_fused(_cfg(fused="auto", amp="fp16", momentum=0.0), torch.device("cuda")) is True
    with pytest.raises(ConfigError, match=r"^train\.fused=true cannot be combined with train\.amp=fp16 and SGD"):
        build_optimizer(_model("rams_trans"), _cfg(fused=True, amp="fp16"))


@pytest.mark.parametrize("model_name", list_models())
def test_the_bf16_channels_last_fused_path_trains_and_matches_fp32(model_name):
    base = _model(model_name)
    reference, _ = _train(copy.deepcopy(base), amp="none", fused=False, channels_last=False)
    losses, applied = _train(copy.deepcopy(base), amp="bf16", fused=True, channels_last=True)
    assert all(applied)
    _assert_matches_fp32(losses, reference)


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before")  # the skipped steps
@pytest.mark.parametrize("model_name", list_models())
def test_the_fp16_scaler_path_skips_overflow_steps_and_matches_fp32(model_name):
    base = _model(model_name)
    reference, _ = _train(copy.deepcopy(base), amp="none", fused=False, channels_last=False)
    losses, applied = _train(copy.deepcopy(base), amp="fp16", fused="auto", channels_last=True)
    assert not all(applied)  # the scaler starts at INIT_SCALE and backs off: the first steps overflow, are skipped
    first_applied = applied.index(True)
    assert all(abs(v - losses[0]) < 1e-6 for v in losses[: first_applied + 1])  # a skipped step left the weights
    # The applied steps follow the fp32 trajectory (compared step for step, after the skips).
    kept = [v for v, done in zip(losses, applied) if done]
    _assert_matches_fp32(kept, reference[: len(kept)])


def test_rams_trans_trains_through_fused_sdpa_with_gradients(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting(q, k, v, *args, **kwargs):
        calls.append(q.requires_grad)
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    model = _model("rams_trans")
    _train(model, amp="bf16", fused=True, channels_last=True)
    depth, scales = len(model.vit.blocks), model.num_scales
    assert len(calls) == STEPS * depth * scales and all(calls)  # every block of every scale, on the autograd path


@pytest.mark.parametrize("model_name", list_models())
def test_the_trainer_runs_the_gpu_switches_on_the_cpu(model_name, tmp_path, monkeypatch):
    seen = {"contexts": [], "channels_last": [], "optimizers": []}

    def recording_autocast(device, amp):
        context = autocast(device, amp)
        seen["contexts"].append(context)
        return context

    def record_layout(module, inputs) -> None:
        if module.training:
            seen["channels_last"].append(inputs[0].is_contiguous(memory_format=torch.channels_last))

    def recording_build_model(*args, **kwargs):
        model = fgvc_core.build_model(*args, **kwargs)
        model.register_forward_pre_hook(record_layout)  # a model built for this test only: no shared model hooked
        return model

    def recording_build_optimizer(model, cfg):
        optimizer = build_optimizer(model, cfg)
        seen["optimizers"].append(optimizer)
        return optimizer

    monkeypatch.setattr(loop, "autocast", recording_autocast)
    monkeypatch.setattr(trainer, "build_model", recording_build_model)
    monkeypatch.setattr(trainer, "build_optimizer", recording_build_optimizer)
    config = tiny_config(tmp_path, model_name, epochs=1, max_steps=2, eval_every=100, amp="bf16", fused=True,
                         channels_last=True)  # fmt: skip
    best = trainer.run_training(config, show_progress=False)
    assert seen["contexts"] and all(isinstance(c, torch.autocast) for c in seen["contexts"])
    assert {c.fast_dtype for c in seen["contexts"]} == {torch.bfloat16}
    assert seen["channels_last"] == [True, True]  # both training steps (evaluation feeds NCHW: same result)
    assert [o.defaults["fused"] for o in seen["optimizers"]] == [True]
    _, meta = fgvc_core.load_checkpoint(best)
    assert meta["train_config"]["train"]["amp"] == "bf16"


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before")
def test_an_fp16_run_on_the_cpu_keeps_its_grad_scaler_state(tmp_path):
    config = tiny_config(tmp_path, "rams_trans", epochs=1, max_steps=2, eval_every=100, amp="fp16")
    trainer.run_training(config, show_progress=False)
    saved = ckpt.load_training_state(tmp_path / "run" / "last.safetensors")
    assert saved["scaler"] is not None and float(saved["scaler"]["scale"]) < 2.0**16  # it backed off, and resumes
    config["train"]["max_steps"] = 3
    trainer.run_training(config, resume=True, show_progress=False)


@pytest.mark.slow
def test_torch_compile_with_inductor_trains_and_matches_eager_fp32():
    # One tiny model: inductor compiles C++ for the CPU here (gcc), about a minute on 2 cores. RAMS-Trans, for its
    # graph breaks (the DPPM's connected components) that the GPU benchmark's --compile also meets.
    base = _model("rams_trans")
    reference, _ = _train(copy.deepcopy(base), amp="none", fused=False, channels_last=False)
    torch._dynamo.reset()
    losses, applied = _train(copy.deepcopy(base), amp="bf16", fused=True, channels_last=True, compile_model=True)
    assert all(applied)
    _assert_matches_fp32(losses, reference)
