"""End-to-end training on the tiny benchmark: logs, checkpoints, exact resume after SIGKILL, DDP = one process."""

from __future__ import annotations

import collections
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fgvc_core
from fgvc_core.engine.trainer import run_training
from tests.engine_fixtures import tiny_config, write_config

ROOT = Path(__file__).resolve().parents[1]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_training_run_writes_logs_and_loadable_checkpoints(tmp_path):
    events = []
    config = tiny_config(tmp_path)
    best = run_training(config, callbacks=[events.append], show_progress=False)
    run = Path(config["train"]["output"])
    assert best == run / "best.safetensors" and best.exists() and (run / "last.safetensors").exists()
    model, meta = fgvc_core.load_checkpoint(best)
    assert meta["classes"] == fgvc_core.build_dataset("synth", config["data"]["root"], "test").classes
    assert meta["preprocess"]["img_size"] == 32 and meta["model"]["name"] == "rams_trans"
    assert 0.0 <= meta["metrics"]["combined_top1"] <= 1.0 and "scale2_top1" in meta["metrics"]
    assert model.config["vit_kwargs"]["depth"] == 2
    assert "pretrained" not in meta  # nothing to trace back to

    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    # every epoch is evaluated on the test split and on the validation stream that picks best
    assert [e.split for e in events if e.kind == "eval"] == ["test", "val", "test", "val"]
    assert meta["selection"] == {"select_on": "val", "val_images": 16, "val": "synth stream, seed 2"}
    assert 0.0 <= meta["metrics"]["val"]["combined_top1"] <= 1.0
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == list(range(1, 9))  # 2 epochs x 32/8 batches
    assert steps[-1].fraction == 1.0
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert {r["name"] for r in rows} >= {"loss", "acc", "lr", "img_per_s", "combined_top1"}
    assert json.loads((run / "status.json").read_text())["kind"] == "done"
    assert any((run / "tb").iterdir())  # TensorBoard event file


def test_a_run_from_pretrained_weights_records_their_file_and_hash(tmp_path):
    import hashlib

    first = run_training(tiny_config(tmp_path, epochs=1), show_progress=False)
    config = tiny_config(tmp_path, epochs=1, output=str(tmp_path / "second"))
    config["model"]["pretrained"] = str(first)
    _, meta = fgvc_core.load_checkpoint(run_training(config, show_progress=False))
    recorded = {"file": str(first), "sha256": hashlib.sha256(first.read_bytes()).hexdigest()}
    assert meta["pretrained"] == recorded
    # The file at that path changes (re-exported); the resumed run still names the weights it started from.
    run_training(tiny_config(tmp_path, epochs=1, seed=7), show_progress=False)
    assert hashlib.sha256(first.read_bytes()).hexdigest() != recorded["sha256"]
    config["train"]["epochs"] = 2  # continue the finished run for one more epoch
    run_training(config, resume=True, show_progress=False)
    last = json.loads((tmp_path / "second" / "last.json").read_text())
    assert last["step"] == 8 and last["pretrained"] == recorded


def test_training_reduces_the_loss_on_a_fixed_stream(tmp_path):
    events = []
    config = tiny_config(tmp_path, epochs=30, lr=0.1, eval_every=100)
    config["data"]["name"] = "synth"  # the on-disk train split: 8 fixed images, one batch, seen every epoch
    config["data"]["val_fraction"], config["train"]["select_on"] = 0.0, "last"  # keep all 8 for training
    run_training(config, callbacks=[events.append], show_progress=False)
    losses = [e.metrics["loss"] for e in events if e.kind == "step"]
    assert losses[-1] < 0.8 * losses[0]


def _run_cli(config_path: Path, *extra: str, wait: bool = True) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "train.train", "--config", str(config_path), "--no-progress", *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    return proc


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path):
    base = tiny_config(tmp_path, epochs=3, checkpoint_every_steps=1, eval_every=100, workers=0)
    base["data"]["train_samples"] = 160  # 20 steps an epoch, 60 in all
    base["model"]["drop_rate"] = 0.1  # dropout makes the RNG state part of what resume must restore

    straight = dict(base, train=dict(base["train"], output=str(tmp_path / "straight")))
    _run_cli(write_config(tmp_path / "straight.yaml", straight))

    killed = dict(base, train=dict(base["train"], output=str(tmp_path / "killed"), workers=1))
    cfg_path = write_config(tmp_path / "killed.yaml", killed)
    proc = _run_cli(cfg_path, wait=False)
    status = tmp_path / "killed" / "status.json"
    deadline = time.time() + 240
    step = 0
    while time.time() < deadline and proc.poll() is None:
        if status.exists():
            try:
                step = json.loads(status.read_text())["step"]
            except (json.JSONDecodeError, KeyError):
                step = 0
            if step >= 25:  # past the first epoch, inside the second
                break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = json.loads((tmp_path / "killed" / "last.json").read_text())
    assert 20 < saved["step"] < 60 and saved["training_state"]["structure"]["train_state"]["batch_in_epoch"] > 0

    _run_cli(cfg_path, "--resume")
    a, b = _weights(tmp_path / "straight" / "last.safetensors"), _weights(tmp_path / "killed" / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

    def logged(run: str) -> collections.Counter:  # the steps done again after the kill are logged once
        rows = csv.DictReader(open(tmp_path / run / "metrics.csv"))
        return collections.Counter((r["epoch"], r["step"], r["split"], r["name"]) for r in rows)

    assert logged("killed") == logged("straight")


def test_a_torn_last_checkpoint_resumes_from_the_previous_whole_set(tmp_path):
    base = tiny_config(tmp_path, epochs=2, checkpoint_every_steps=1, eval_every=100, workers=0)
    straight = dict(base, train=dict(base["train"], output=str(tmp_path / "straight")))
    torn = dict(base, train=dict(base["train"], output=str(tmp_path / "torn")))
    run_training(straight, show_progress=False)
    run_training(torn, show_progress=False)
    run = tmp_path / "torn"
    prev = json.loads((run / "last.prev.json").read_text())
    assert prev["step"] == json.loads((run / "last.json").read_text())["step"] - 1 == 7  # 2 epochs x 4 steps
    # A kill between the renames of the last save: its new weights beside the sidecar of the save before.
    (run / "last.json").write_text((run / "last.prev.json").read_text())
    with pytest.raises(fgvc_core.CheckpointError, match="does not match its sidecar"):
        fgvc_core.load_checkpoint(run / "last.safetensors")
    run_training(torn, resume=True, show_progress=False)  # falls back to last.prev.*, redoes step 8
    a, b = _weights(tmp_path / "straight" / "last.safetensors"), _weights(run / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    base = tiny_config(tmp_path, epochs=1, eval_every=100, batch_size=8)
    base["data"]["train_samples"] = 32
    one = dict(base, train=dict(base["train"], output=str(tmp_path / "one")))
    _run_cli(write_config(tmp_path / "one.yaml", one))

    two = dict(base, train=dict(base["train"], output=str(tmp_path / "two"), batch_size=4))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "train.train",
           "--config", str(write_config(tmp_path / "two.yaml", two)), "--no-progress"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    a, b = _weights(tmp_path / "one" / "last.safetensors"), _weights(tmp_path / "two" / "last.safetensors")
    start = fgvc_core.build_model("rams_trans", 4, **{k: v for k, v in base["model"].items() if k != "name"})
    moved = 0
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
        moved += not torch.allclose(a[key], start.state_dict()[key].to(a[key].dtype))
    assert moved > 0.5 * len(a)  # the runs really trained
