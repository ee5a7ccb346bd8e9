"""``run_training``: config in, checkpoints out. Reads top to bottom like torchvision's reference ``main``:
distributed init -> data -> model -> optimizer/scheduler -> resume -> DDP -> epochs (train, evaluate, save).

Files in ``train.output``: ``last.safetensors`` (+ training state, rewritten every ``checkpoint_every_steps`` and
at every epoch end), ``best.safetensors`` (best selection top-1 on the split ``train.select_on`` names: the
validation split by default, see `fgvc_core.engine.splits`), ``metrics.csv``, ``tb/``, ``status.json`` and
``config.yaml``. Every checkpoint's metrics are the test split's, with the validation split's under ``"val"``.
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
from fgvc_core.engine.bad_images import one_line
from fgvc_core.engine.data import build_data, data_preprocess, eval_loader, train_loader
from fgvc_core.engine.distributed import barrier, cleanup, init_distributed, is_main_process
from fgvc_core.engine.logging import Callback, ProgressEvent, RunLogger, truncate_metrics
from fgvc_core.engine.loop import TrainState, collect_predictions, train_one_epoch
from fgvc_core.engine.metrics import classification_report
from fgvc_core.engine.optim import build_optimizer
from fgvc_core.engine.resume import prepare_run_folder
from fgvc_core.engine.runlock import RunLock
from fgvc_core.engine.schedule import build_scheduler
from fgvc_core.engine.splits import check_split_options
from fgvc_core.engine.validate import validate_sections
from fgvc_core.errors import ConfigError, FGVCError, TrainingError
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
    ckpt.check_finite_outputs(combined)  # finite weights can still overflow: never report "nan%"
    return classification_report(heads, combined, targets)


TEST_SELECTION_WARNING = (
    "train.select_on=test picks the best checkpoint on the test split (the official RAMS-Trans code's practice); "
    "its test accuracy is then biased upwards. Use select_on=val for a number you can report."
)


def selection_record(data_cfg: dict[str, Any], select_on: str, val_set) -> dict[str, Any]:
    """What the sidecar says about how ``best`` was chosen (the README and the app quote it)."""
    record: dict[str, Any] = {"select_on": select_on}
    if select_on == "test":
        record["warning"] = TEST_SELECTION_WARNING
    if val_set is not None:
        record["val_images"] = len(val_set)
        if data_cfg["name"] == "synth_stream":
            record["val"] = f"synth stream, seed {data_cfg['val_stream_seed']}"
        elif data_cfg.get("val_split") is not None:
            record["val"] = f"split {data_cfg['val_split']!r}"
        else:
            share, split = data_cfg["val_fraction"], data_cfg["train_split"]
            record["val"] = f"{share:g} of each class of {split!r}, seed {data_cfg['val_seed']}"
    return record


def _summary(report: dict[str, Any]) -> dict[str, float]:
    return {f"{head}_{k}": v for head, vals in report.items() if isinstance(vals, dict) for k, v in vals.items()}


def run_training(
    config: dict[str, Any], resume: bool = False, callbacks: list[Callback] | None = None, show_progress: bool = True
) -> Path:
    """Train as ``config`` says; return the path of the best checkpoint.

    The output folder is locked for the run's lifetime (a second run into it fails, naming this one's PID), and a
    resume must use the config its checkpoint was trained with (`fgvc_core.engine.resume`).
    """
    validate_sections(config)  # a config built in code, not by load_config, is checked too
    out = Path(config["train"]["output"])
    with RunLock(out, enabled=is_main_process()):
        if is_main_process():
            prepare_run_folder(out, config, resume)
        return _train(config, resume, callbacks, show_progress)


def _train(config: dict[str, Any], resume: bool, callbacks: list[Callback] | None, show_progress: bool) -> Path:
    dist_info = init_distributed(config["train"].get("device"))
    device, main = dist_info.device, dist_info.is_main
    cfg_train, cfg_data = config["train"], config["data"]
    out = Path(cfg_train["output"])
    seed_everything(cfg_train["seed"], cfg_train["deterministic"])

    check_split_options(cfg_data, cfg_train["select_on"])
    preprocess = data_preprocess(cfg_data)
    train_set, val_set, test_set, classes = build_data(cfg_data, preprocess)
    model_cfg = {k: v for k, v in config["model"].items() if k != "name"}
    model = build_model(config["model"]["name"], len(classes), **model_cfg).to(device)
    if cfg_train["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    has_batchnorm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if dist_info.enabled and has_batchnorm and device.type != "cuda":  # torch: "SyncBatchNorm ... GPU modules"
        raise ConfigError(
            f"{config['model']['name']} has BatchNorm layers, whose statistics match one process's across several "
            "only with SyncBatchNorm, which runs on GPUs; train it in one process on the CPU"
        )

    world_batch = cfg_train["batch_size"] * dist_info.world_size
    steps_per_epoch = len(train_set) // world_batch
    if steps_per_epoch < 1:
        raise ConfigError(
            f"train.batch_size {cfg_train['batch_size']} (x {dist_info.world_size} process(es)) is larger than the "
            f"training set ({len(train_set)} images); lower train.batch_size"
        )
    total_steps = steps_per_epoch * cfg_train["epochs"]
    if cfg_train["max_steps"]:
        total_steps = min(total_steps, cfg_train["max_steps"])
    optimizer = build_optimizer(model, cfg_train)
    scheduler = build_scheduler(optimizer, total_steps, cfg_train["warmup_steps"], cfg_train["min_lr_ratio"])
    amp = cfg_train["amp"]
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None  # fp16 is honoured on the CPU too

    state = TrainState()
    last_path, best_path = out / "last.safetensors", out / "best.safetensors"
    restored = None
    if resume and last_path.exists():
        state, restored = _restore_latest(last_path, model, optimizer, scheduler, scaler, device)
    meta = {
        "classes": classes,
        "preprocess": preprocess,
        "dataset": {k: cfg_data[k] for k in ("name", "root", "train_split", "test_split")},
        "selection": selection_record(cfg_data, cfg_train["select_on"], val_set),
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
        if has_batchnorm:
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)  # same statistics as one process
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    if cfg_train["compile"]:
        net = torch.compile(net)

    if main:  # steps a resume does again must not be logged twice; a fresh run starts a fresh log
        rows = ckpt.read_meta(restored).get("metrics_rows") if restored is not None else 0
        truncate_metrics(out, rows=rows, max_step=state.step)
    logger = RunLogger(out, callbacks, enabled=main, tb_purge_step=state.step + 1 if restored is not None else 0)
    if cfg_train["select_on"] == "test" and main:
        print(f"warning: {TEST_SELECTION_WARNING}", flush=True)  # the run's log; the sidecar records it too

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
        extra["metrics_rows"] = logger.rows  # a resume from this checkpoint cuts metrics.csv back to these rows
        try:
            ckpt.save_checkpoint(
                model, path, extra, dtype=cfg_train["save_dtype"], training_state=training_state,
                keep_previous=path == last_path,  # a kill between the renames must leave one whole set to resume
            )  # fmt: skip
        except OSError as exc:  # a full disk, a folder made read-only mid-run
            raise TrainingError(f"cannot save {path.name} in {out}: {exc.strerror or exc}") from None
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
                cfg_data["on_bad_image"],
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
            if cfg_data["on_bad_image"] == "skip":
                epoch_stats["skipped_images"] = loader.skipped
            logger.log(ProgressEvent("epoch", state.epoch, state.step, total_steps, "train_epoch", epoch_stats))
            finished = state.step >= total_steps or state.epoch + 1 >= cfg_train["epochs"]
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            metrics: dict[str, Any] = {}
            if main and (state.epoch % cfg_train["eval_every"] == 0 or finished):
                batch, workers = cfg_train["batch_size"], cfg_train["workers"]
                report = evaluate_model(model, eval_loader(test_set, batch, workers), device, amp)
                metrics = _summary(report)
                logger.log(ProgressEvent("eval", state.epoch, state.step, total_steps, "test", dict(metrics)))
                selection_report = report
                if val_set is not None:
                    val_report = evaluate_model(model, eval_loader(val_set, batch, workers), device, amp)
                    metrics["val"] = _summary(val_report)
                    logger.log(ProgressEvent("eval", state.epoch, state.step, total_steps, "val", metrics["val"]))
                    if cfg_train["select_on"] == "val":
                        selection_report = val_report
                # the combined prediction averages only trained heads (RAMS-Trans w=(1,0): scale 1 alone)
                score = selection_report["combined"]["top1"]
                if cfg_train["select_on"] == "last" or score > state.best_top1:
                    state.best_top1 = score
                    save(best_path, {**metrics, "per_class_accuracy": report["per_class_accuracy"]}, with_state=False)
            save(last_path, metrics)
            barrier()
        logger.log(ProgressEvent("done", state.epoch, state.step, total_steps, message=str(best_path)))
    except BaseException as exc:
        cause = one_line(str(exc))  # a DataLoader worker's error carries its whole traceback in the message
        try:
            message = f"{type(exc).__name__}: {cause}"
            logger.log(ProgressEvent("failed", state.epoch, state.step, total_steps, message=message))
        except FGVCError:
            pass  # the folder takes no status at all: the error raised below still says what went wrong
        if isinstance(exc, FGVCError) and cause != str(exc):
            raise type(exc)(cause) from None
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
