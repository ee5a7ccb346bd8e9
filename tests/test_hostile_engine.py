"""Hostile inputs to the training engine (issue 15): config values, one run per folder, resume, failures mid-run.

Each case ends in one clear line (``error: ...`` and exit 2 from ``python -m train.train``), writes nothing where
it must not, and keeps the last good checkpoint. Most cases call the CLI's ``main`` in this process (same code
path, seconds instead of a fresh interpreter); the lock and the read-only folder use real second processes.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

import fgvc_core
from fgvc_core.engine.config import DEFAULTS, load_config
from fgvc_core.engine.distributed import resolve_device
from fgvc_core.engine.logging import truncate_metrics
from fgvc_core.engine.runlock import RunFolderBusy, RunLock
from fgvc_core.engine.trainer import run_training
from fgvc_core.engine.validate import RULES
from fgvc_core.errors import ConfigError, TrainingError
from tests.engine_fixtures import tiny_config, write_config
from train.train import get_args_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _cli(capsys, config_path: Path, *extra: str) -> tuple[int, list[str]]:
    """``python -m train.train --config ... --no-progress extra...`` in-process: (exit code, stderr lines)."""
    capsys.readouterr()
    code = main(get_args_parser().parse_args(["--config", str(config_path), "--no-progress", *extra]))
    return code, capsys.readouterr().err.strip().splitlines()


def _one_error_line(lines: list[str]) -> str:
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and not any("Traceback" in line for line in lines), lines
    return errors[0]


def _recipe(tmp_path: Path, **train) -> Path:
    return write_config(tmp_path / "recipe.yaml", tiny_config(tmp_path, **train))


def _metric_keys(run: Path) -> Counter:
    rows = csv.DictReader(open(run / "metrics.csv"))
    return Counter((r["epoch"], r["step"], r["split"], r["name"]) for r in rows)


# ---- config values validated up front -------------------------------------------------------------------------

BAD_VALUES = [
    ("train.batch_size=true", "train.batch_size must be a positive integer, got True"),
    ("train.workers=-1", "train.workers must be a non-negative integer, got -1"),
    ("train.grad_clip=abc", "train.grad_clip must be a finite number >= 0 (0 disables clipping), got 'abc'"),
    ("train.seed=-1", "train.seed must be an integer in [0, 2**63), got -1"),
    ("train.output=", "train.output must be a non-empty string, got None"),
    ("train.output=' '", "train.output must be a non-empty string, got ' '"),
    ("train.eval_every=0", "train.eval_every must be a positive integer (epochs), got 0"),
    ("train.lr=true", "train.lr must be a positive number or a mapping of them, got True"),
    ("train.lr=.inf", "train.lr must be a positive number or a mapping of them, got inf"),
    ("train.lr={backbone: .nan}", "train.lr must be a positive number or a mapping of them"),
    ("train.max_steps=-5", "train.max_steps must be a non-negative integer (0: no limit), got -5"),
    ("train.momentum=1.5", "train.momentum must be a finite number >= 0 and <= 1, got 1.5"),
    ("train.weight_decay=-0.1", "train.weight_decay must be a finite number >= 0, got -0.1"),
    ("train.warmup_steps=2.5", "train.warmup_steps must be a non-negative integer, got 2.5"),
    ("train.min_lr_ratio=2", "train.min_lr_ratio must be a finite number >= 0 and <= 1, got 2"),
    ("train.log_every=0", "train.log_every must be a positive integer, got 0"),
    ("train.checkpoint_every_steps=-1", "train.checkpoint_every_steps must be a non-negative integer"),
    ("train.save_dtype=int8", "train.save_dtype must be float32 or float16 or bfloat16, got 'int8'"),
    ("train.amp=fp8", "train.amp must be auto or bf16 or fp16 or none, got 'fp8'"),
    ("train.device=gpu", "train.device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("train.nesterov=2", "train.nesterov must be true or false, got 2"),
    ("train.epochs=1.0", "train.epochs must be a positive integer, got 1.0"),
    ("data.train_samples=0", "data.train_samples must be a positive integer, got 0"),
    ("data.seed=-3", "data.seed must be an integer in [0, 2**63), got -3"),
    ("data.num_classes=1", "data.num_classes must be null or an integer >= 2, got 1"),
    ("data.img_size=100000", "data.img_size must be null or an integer from 16 to 4096, got 100000"),
    ("data.on_bad_image=ignore", "data.on_bad_image must be stop or skip, got 'ignore'"),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES)
def test_a_bad_value_is_one_line_and_exit_2_before_anything_is_written(tmp_path, capsys, override, message):
    recipe = _recipe(tmp_path)
    code, lines = _cli(capsys, recipe, override)
    assert code == 2
    assert message in _one_error_line(lines)
    assert not (tmp_path / "run").exists()


def test_every_data_and_train_default_has_a_rule():
    for section in ("data", "train"):
        assert set(DEFAULTS[section]) <= set(RULES[section]), set(DEFAULTS[section]) - set(RULES[section])
        for key, value in DEFAULTS[section].items():
            assert RULES[section][key].check(value), f"the default of {section}.{key} breaks its own rule"


def test_run_training_validates_a_config_built_in_code(tmp_path):
    config = tiny_config(tmp_path)
    config["train"]["workers"] = -1  # after merge_defaults: the trainer must not trust its caller
    with pytest.raises(ConfigError, match="train.workers must be a non-negative integer"):
        run_training(config, show_progress=False)
    assert not (tmp_path / "run").exists()


def test_a_batch_larger_than_the_training_set_is_a_config_error_and_leaves_no_folder(tmp_path, capsys):
    code, lines = _cli(capsys, _recipe(tmp_path), "train.batch_size=64")  # the stream has 32 images
    assert code == 2
    assert "train.batch_size 64 (x 1 process(es)) is larger than the training set (32 images)" in _one_error_line(lines)
    assert not (tmp_path / "run").exists()  # the lock's folder is removed when nothing else was written


def test_device_is_a_known_key_and_cpu_trains(tmp_path, capsys):
    assert load_config(None, ["model.name=rams_trans", "train.device=cpu"])["train"]["device"] == "cpu"
    code, _ = _cli(capsys, _recipe(tmp_path, epochs=1, eval_every=1), "train.device=cpu")
    assert code == 0 and (tmp_path / "run" / "best.safetensors").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_one_line(tmp_path, capsys):
    code, lines = _cli(capsys, _recipe(tmp_path), "train.device=cuda")
    assert code == 2
    assert "train.device=cuda but this machine has no CUDA device (use auto or cpu)" in _one_error_line(lines)
    assert not (tmp_path / "run").exists()


def test_a_cuda_index_the_machine_does_not_have_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"train.device=cuda:3 but this machine has 1 CUDA device\(s\)"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cpu") == torch.device("cpu")


# ---- one run, one folder ----------------------------------------------------------------------------------------


def test_a_second_run_into_a_locked_folder_names_the_holder_and_writes_nothing(tmp_path):
    recipe = _recipe(tmp_path)
    run = tmp_path / "run"
    with RunLock(run):  # this process is the first run
        before = sorted(p.name for p in run.iterdir())
        cmd = [sys.executable, "-m", "train.train", "--config", str(recipe), "--no-progress"]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stdout + done.stderr
        line = _one_error_line(done.stderr.strip().splitlines())
        assert f"another training (PID {os.getpid()}) is writing to {run}" in line
        assert sorted(p.name for p in run.iterdir()) == before == [".lock"]


def test_a_killed_holder_frees_the_folder_at_once(tmp_path):
    run = tmp_path / "run"
    code = f"from fgvc_core.engine.runlock import RunLock; import time; RunLock({str(run)!r}).acquire(); print('x', flush=True); time.sleep(60)"  # noqa: E501
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "x"
        with pytest.raises(RunFolderBusy, match=f"PID {holder.pid}"):
            RunLock(run).acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with RunLock(run):  # the kernel dropped the dead holder's flock: a --resume can start right away
        assert (run / ".lock").read_text().strip() == str(os.getpid())


def test_a_killed_holders_forked_workers_delay_the_lock_but_do_not_refuse_a_resume(tmp_path):
    """The SIGKILL-resume test's failure: a DataLoader worker forked while the lock was held inherits the flock."""
    run = tmp_path / "run"
    code = (
        f"import os, time\nfrom fgvc_core.engine.runlock import RunLock\nRunLock({str(run)!r}).acquire()\n"
        "if os.fork() == 0:\n    time.sleep(2.0)\n    os._exit(0)  # the orphaned worker, still holding the lock\n"
        "print('x', flush=True)\ntime.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "x"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with RunLock(run):  # waits for the orphan (about 2 s) instead of naming a dead PID
        assert (run / ".lock").read_text().strip() == str(os.getpid())
    assert 0.5 < time.monotonic() - started < 12


# ---- resume means the same run ----------------------------------------------------------------------------------


@pytest.fixture
def finished_run(tmp_path):
    """A 1-epoch run (4 steps, a checkpoint after every step) and its recipe."""
    recipe = _recipe(tmp_path, epochs=1, checkpoint_every_steps=1)
    run_training(load_config(recipe), show_progress=False)
    return recipe, tmp_path / "run"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.batch_size=4", "train.batch_size (8 -> 4)"),
        ("train.lr=0.1", "train.lr (0.05 -> 0.1)"),
        ("data.img_size=48", "data.img_size (32 -> 48)"),
        ("train.optimizer=adamw", "train.optimizer ('sgd' -> 'adamw')"),  # was KeyError: 'step'
    ],
)
def test_resume_with_a_changed_config_is_refused_naming_the_keys(finished_run, capsys, override, named):
    recipe, run = finished_run
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, lines = _cli(capsys, recipe, override, "train.epochs=2", "--resume")
    assert code == 2
    line = _one_error_line(lines)
    assert f"cannot resume {run}: the config differs from the one in last.json in {named};" in line
    assert "only data.on_bad_image, train.checkpoint_every_steps, train.compile, train.device" in line
    assert "train.epochs (" not in line  # a longer run is an allowed change
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing touched


def test_resume_removes_orphaned_staging_files_and_logs_each_step_once(tmp_path, capsys):
    straight = tiny_config(tmp_path, epochs=2, checkpoint_every_steps=1, output=str(tmp_path / "straight"))
    run_training(straight, show_progress=False)
    recipe = _recipe(tmp_path, epochs=2, checkpoint_every_steps=1)
    run_training(load_config(recipe), show_progress=False)
    run = tmp_path / "run"
    # A kill after the last step was logged but before its checkpoint landed: last is the save before, and the
    # staging files of the interrupted save are still there.
    for suffix in (".safetensors", ".json", ".train.safetensors"):
        shutil.copyfile(run / f"last.prev{suffix}", run / f"last{suffix}")
    orphans = [run / ".ckpt.k1ll3d.tmp", run / ".last.prev.json.4242.link", run / ".status.json.tmp"]
    for path in orphans:
        path.write_bytes(b"\0" * 2**20)
    assert json.loads((run / "last.json").read_text())["step"] == 7
    code, lines = _cli(capsys, recipe, "--resume")
    assert code == 0, lines
    assert not any(path.exists() for path in orphans)
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.link"))
    assert _metric_keys(run) == _metric_keys(tmp_path / "straight")  # step 8 and its eval once, not twice


def test_a_fresh_run_into_a_used_folder_starts_a_fresh_log(tmp_path):
    config = tiny_config(tmp_path, epochs=1)
    run_training(config, show_progress=False)
    first = _metric_keys(tmp_path / "run")
    run_training(config, show_progress=False)
    assert _metric_keys(tmp_path / "run") == first


def test_truncate_metrics_by_rows_or_by_step(tmp_path):
    rows = [["0.1", "0", str(s), "train", "loss", "1"] for s in (1, 2, 3)]
    with open(tmp_path / "metrics.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["time", "epoch", "step", "split", "name", "value"], *rows])
    with open(tmp_path / "metrics.csv", "a") as handle:
        handle.write("0.4,0,4,tra")  # a line torn by a kill
    assert truncate_metrics(tmp_path, max_step=2) == 2
    assert [r["step"] for r in csv.DictReader(open(tmp_path / "metrics.csv"))] == ["1", "2"]
    assert truncate_metrics(tmp_path, rows=1) == 1
    assert [r["step"] for r in csv.DictReader(open(tmp_path / "metrics.csv"))] == ["1"]


# ---- failures mid-run -------------------------------------------------------------------------------------------


def test_a_non_finite_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    recipe = _recipe(tmp_path, epochs=1, lr=1e8, checkpoint_every_steps=1, eval_every=100)
    code, lines = _cli(capsys, recipe)
    assert code == 2
    line = _one_error_line(lines)
    assert "the loss became nan at step 2 (epoch 1); training stopped before updating the weights" in line
    run = tmp_path / "run"
    status = json.loads((run / "status.json").read_text())
    assert status["kind"] == "failed" and status["message"].startswith("TrainingError: the loss became nan")
    model, meta = fgvc_core.load_checkpoint(run / "last.safetensors")
    assert meta["step"] == 1
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())


def _bad_image_recipe(tmp_path: Path, split: str, **train) -> tuple[Path, str]:
    """An on-disk benchmark whose first ``split`` image is not a JPEG any more; the recipe trains on it."""
    config = tiny_config(tmp_path, epochs=1, batch_size=4, workers=1, **train)
    config["data"].update(name="synth", val_fraction=0.0, val_samples=0)
    config["train"]["select_on"] = "last"
    path = Path(fgvc_core.build_dataset("synth", config["data"]["root"], split).samples[0][0])
    path.write_bytes(b"this is not a jpeg" * 10)
    return write_config(tmp_path / "recipe.yaml", config), path.name


def test_a_bad_training_image_in_a_worker_is_one_line_in_the_error_and_status(tmp_path, capsys):
    recipe, name = _bad_image_recipe(tmp_path, "train")
    code, lines = _cli(capsys, recipe)
    assert code == 2
    line = _one_error_line(lines)
    assert name in line and line.endswith("(set data.on_bad_image=skip to train without it)")
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["kind"] == "failed" and "\n" not in status["message"] and name in status["message"]


def test_on_bad_image_skip_logs_the_file_and_counts_it(tmp_path, capsys):
    recipe, name = _bad_image_recipe(tmp_path, "train")
    code, lines = _cli(capsys, recipe, "data.on_bad_image=skip")
    assert code == 0, lines
    skipped = [line for line in lines if line.startswith("warning: skipped a training image:")]
    assert len(skipped) == 1 and name in skipped[0]
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "metrics.csv")) if r["name"] == "skipped_images"]
    assert [(r["split"], r["value"]) for r in rows] == [("train_epoch", "1")]


def test_a_bad_test_image_in_an_eval_worker_is_one_line(tmp_path, capsys):
    recipe, name = _bad_image_recipe(tmp_path, "test")
    code, lines = _cli(capsys, recipe)
    assert code == 2
    line = _one_error_line(lines)
    assert name in line and "DataLoader worker" not in line
    assert "\n" not in json.loads((tmp_path / "run" / "status.json").read_text())["message"]


def _unprivileged(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as ``nobody`` when the tests run as root (root ignores a read-only folder's mode bits)."""
    if os.getuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a folder read-only for the run")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]


def test_an_output_folder_made_read_only_mid_run_fails_with_one_line_and_status_failed():
    work = Path(tempfile.mkdtemp(prefix="fgvc_readonly_"))  # not under pytest's 0700 tmp root: nobody must enter
    try:
        config = tiny_config(work, epochs=2, checkpoint_every_steps=1, eval_every=100)
        config["data"]["train_samples"] = 400  # 50 steps an epoch: time to change the folder mid-run
        recipe = write_config(work / "recipe.yaml", config)
        run = work / "run"
        if os.getuid() == 0:
            for path in [work, *work.rglob("*")]:
                os.chown(path, 65534, 65534)
        env = dict(os.environ, HOME=str(work))
        cmd = _unprivileged([sys.executable, "-m", "train.train", "--config", str(recipe), "--no-progress"])
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.loads((run / "status.json").read_text())["step"] >= 3:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before the folder could be made read-only; make it longer"
        run.chmod(0o555)
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 2, out + err
        line = _one_error_line(err.strip().splitlines())
        assert f"in {run}: Permission denied" in line
        status = json.loads((run / "status.json").read_text())
        assert status["kind"] == "failed" and "Permission denied" in status["message"]
        _, meta = fgvc_core.load_checkpoint(run / "last.safetensors")  # the last good checkpoint is whole
        assert meta["step"] >= 2  # status.json said step 3 before that step's save
    finally:
        if (work / "run").exists():
            (work / "run").chmod(0o755)
        shutil.rmtree(work, ignore_errors=True)


def test_training_error_is_a_user_facing_error():
    assert issubclass(TrainingError, fgvc_core.FGVCError) and issubclass(RunFolderBusy, TrainingError)
