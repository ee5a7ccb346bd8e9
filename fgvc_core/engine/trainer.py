"""``run_training``: config in, checkpoints out. Reads top to bottom like torchvision's reference ``main``:
distributed init -> data -> model -> optimizer/scheduler -> resume -> DDP -> epochs (train, evaluate, save).

Files in ``train.output``: ``last.safetensors`` (+ training state, rewritten every ``checkpoint_every_steps`` and
at every epoch end), ``best.safetensors`` (best combined top-1 on the test split), ``metrics.csv``, ``tb/``,
``status.json`` and ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from fgvc_core.engine import checkpoint as ckpt
from fgvc_core.engine.data import build_data, data_preprocess, eval_loader, train_loader
from fgvc_core.engine.distributed import barrier, cleanup, init_distributed
from fgvc_core.engine.logging import Callback, ProgressEvent, RunLogger
from fgvc_core.engine.loop import TrainState, collect_predictions, train_one_epoch
from fgvc_core.engine.metrics import classification_report
from fgvc_core.engine.optim import build_optimizer
from fgvc_core.engine.schedule import build_scheduler
from fgvc_core.models.registry import build_model


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code that uses the global RNG
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def evaluate_model(model: torch.nn.Module, loader, device: torch.device, amp: str) -> dict[str, Any]:
    """Top-1/top-5 per head and combined, per-class accuracy and the confusion matrix on ``loader``."""
    heads, combined, targets = collect_predictions(model, loader, device, amp)
    return classification_report(heads, combined, targets)


def _summary(report: dict[str, Any]) -> dict[str, float]:
    return {f"{head}_{k}": v for head, vals in report.items() if isinstance(vals, dict) for k, v in vals.items()}


def run_training(
    config: dict[str, Any], resume: bool = False, callbacks: list[Callback] | None = None, show_progress: bool = True
) -> Path:
    """Train as ``config`` says; return the path of the best checkpoint."""
    dist_info = init_distributed(config["train"].get("device"))
    device, main = dist_info.device, dist_info.is_main
    cfg_train, cfg_data = config["train"], config["data"]
    out = Path(cfg_train["output"])
    seed_everything(cfg_train["seed"], cfg_train["deterministic"])

    preprocess = data_preprocess(cfg_data)
    train_set, test_set, classes = build_data(cfg_data, preprocess)
    model_cfg = {k: v for k, v in config["model"].items() if k != "name"}
    model = build_model(config["model"]["name"], len(classes), **model_cfg).to(device)
    if cfg_train["channels_last"]:
        model = model.to(memory_format=torch.channels_last)

    world_batch = cfg_train["batch_size"] * dist_info.world_size
    steps_per_epoch = len(train_set) // world_batch
    if steps_per_epoch < 1:
        raise ValueError(f"the training set ({len(train_set)} images) is smaller than one batch ({world_batch})")
    total_steps = steps_per_epoch * cfg_train["epochs"]
    if cfg_train["max_steps"]:
        total_steps = min(total_steps, cfg_train["max_steps"])
    optimizer = build_optimizer(model, cfg_train)
    scheduler = build_scheduler(optimizer, total_steps, cfg_train["warmup_steps"], cfg_train["min_lr_ratio"])
    amp = cfg_train["amp"]
    scaler = torch.amp.GradScaler("cuda") if (amp == "fp16" and device.type == "cuda") else None

    state = TrainState()
    last_path, best_path = out / "last.safetensors", out / "best.safetensors"
    restored = None
    if resume and last_path.exists():
        state, restored = _restore_latest(last_path, model, optimizer, scheduler, scaler, device)
    meta = {
        "classes": classes,
        "preprocess": preprocess,
        "dataset": {k: cfg_data[k] for k in ("name", "root", "train_split", "test_split")},
        "train_config": config,
    }
    # Provenance: a recipe names its starting weights by path, and the file there may change later (the RAMS demo
    # starts from the CRA-SMRA demo checkpoint, which is re-exported when that run improves). A resumed run keeps
    # the hash recorded when it started, not that of whatever file is at the path now.
    if restored is not None:
        provenance = ckpt.read_meta(restored).get("pretrained")
    elif config["model"].get("pretrained"):
        source = Path(config["model"]["pretrained"])
        provenance = {"file": str(source), "sha256": ckpt.file_sha256(source)}
    else:
        provenance = None
    if provenance is not None:
        meta["pretrained"] = provenance
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    net = model
    if dist_info.enabled:
        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)  # same statistics as one process
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    if cfg_train["compile"]:
        net = torch.compile(net)

    logger = RunLogger(out, callbacks, enabled=main)

    def save(path: Path, metrics: dict[str, Any] | None = None, with_state: bool = True) -> None:
        if not main:
            return
        training_state = None
        if with_state:
            training_state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "train_state": dataclasses.asdict(state),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            }
        extra = {**meta, "metrics": metrics or {}, "epoch": state.epoch, "step": state.step}
        ckpt.save_checkpoint(
            model, path, extra, dtype=cfg_train["save_dtype"], training_state=training_state,
            keep_previous=path == last_path,  # a kill between the renames must leave one whole set to resume
        )  # fmt: skip
        logger.log(ProgressEvent("checkpoint", state.epoch, state.step, total_steps, message=str(path)))

    every = cfg_train["checkpoint_every_steps"]

    def on_step(s: TrainState) -> None:
        if every and s.step % every == 0 and s.step < total_steps:
            save(last_path)

    logger.log(ProgressEvent("start", state.epoch, state.step, total_steps, message=str(out)))
    try:
        while state.epoch < cfg_train["epochs"] and state.step < total_steps:
            loader = train_loader(
                train_set,
                preprocess,
                cfg_train["batch_size"],
                cfg_train["seed"],
                state.epoch,
                state.batch_in_epoch,
                cfg_train["workers"],
                dist_info.rank,
                dist_info.world_size,
                cfg_data["curriculum"],
            )
            epoch_stats = train_one_epoch(
                net,
                loader,
                optimizer,
                scheduler,
                state,
                device=device,
                total_steps=total_steps,
                amp=amp,
                grad_clip=cfg_train["grad_clip"],
                scaler=scaler,
                logger=logger,
                log_every=cfg_train["log_every"],
                max_steps=total_steps,
                on_step=on_step,
                show_progress=show_progress and main,
                channels_last=cfg_train["channels_last"],
                num_batches=steps_per_epoch - state.batch_in_epoch,
            )
            logger.log(ProgressEvent("epoch", state.epoch, state.step, total_steps, "train_epoch", epoch_stats))
            finished = state.step >= total_steps or state.epoch + 1 >= cfg_train["epochs"]
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            metrics: dict[str, Any] = {}
            if main and (state.epoch % cfg_train["eval_every"] == 0 or finished):
                report = evaluate_model(
                    model, eval_loader(test_set, cfg_train["batch_size"], cfg_train["workers"]), device, amp
                )
                metrics = _summary(report)
                logger.log(ProgressEvent("eval", state.epoch, state.step, total_steps, "test", metrics))
                if report["combined"]["top1"] > state.best_top1:
                    state.best_top1 = report["combined"]["top1"]
                    save(best_path, {**metrics, "per_class_accuracy": report["per_class_accuracy"]}, with_state=False)
            save(last_path, metrics)
            barrier()
        logger.log(ProgressEvent("done", state.epoch, state.step, total_steps, message=str(best_path)))
    except BaseException as exc:
        logger.log(
            ProgressEvent("failed", state.epoch, state.step, total_steps, message=f"{type(exc).__name__}: {exc}")
        )
        raise
    finally:
        logger.close()
        cleanup()
    return best_path


def _restore_latest(path: Path, model, optimizer, scheduler, scaler, device) -> tuple[TrainState, Path]:
    """Resume from ``last``; if a kill tore it (files from two saves), from the whole set kept before it.

    Returns the restored state and the checkpoint it came from.
    """
    try:
        return _restore(path, model, optimizer, scheduler, scaler, device), path
    except ckpt.CheckpointError as exc:
        previous = ckpt.previous_path(path)
        if not previous.exists():
            raise
        print(f"{path.name}: {exc}; resuming from {previous.name}, the checkpoint saved before it")
        return _restore(previous, model, optimizer, scheduler, scaler, device), previous


def _restore(path: Path, model, optimizer, scheduler, scaler, device) -> TrainState:
    """Load weights and the full training state of ``last.safetensors`` for an exact continuation."""
    ckpt.load_weights_into(model, ckpt.read_weights(path), path.name)
    saved = ckpt.load_training_state(path)
    if saved is None:
        raise ckpt.CheckpointError(f"{path.name} has no training state to resume from")
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if scaler is not None and saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["torch_rng"])
    if torch.cuda.is_available() and saved.get("cuda_rng"):
        torch.cuda.set_rng_state_all(list(saved["cuda_rng"]))
    return TrainState(**saved["train_state"])
