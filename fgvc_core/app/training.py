"""Training runs started from the app: ``python -m train.train`` in the background, watched through its logs.

Each run gets its own folder under the runs directory (``runs/app/<time>-<recipe>``). The app never trains in its
own process: a subprocess keeps the page responsive, survives a browser refresh, and writes what the engine
always writes: ``status.json`` (progress), ``metrics.csv`` (curves), ``best.safetensors`` (the new checkpoint,
which the sidebar then lists). ``app_job.json`` records the command and process id, ``train.log`` its output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fgvc_core.app.settings import AppPaths
from fgvc_core.engine.config import load_config
from fgvc_core.errors import ConfigError

JOB_FILE, LOG_FILE, STATUS_FILE, METRICS_FILE = "app_job.json", "train.log", "status.json", "metrics.csv"
# Popen handles of the runs this server started (shared by sessions: the runs folder is shared too), so that a
# finished child is reaped and its exit code read; runs started by an earlier server are judged from their files.
_PROCESSES: dict[str, subprocess.Popen] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class RunState:
    """What one run is doing.

    Attributes:
        run_dir: the run's folder.
        state: ``starting``, ``running``, ``done``, ``failed`` or ``stopped``.
        status: the last ``status.json`` (engine ``ProgressEvent`` fields plus ``fraction``), or None.
        checkpoint: ``best.safetensors`` once the run is done (``last`` if there is no best), else None.
        log_tail: the last lines of ``train.log`` (for failures).
        job: ``app_job.json``.
    """

    run_dir: Path
    state: str
    status: dict[str, Any] | None
    checkpoint: Path | None
    log_tail: str = ""
    job: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return float((self.status or {}).get("fraction", 0.0) or 0.0)

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running")


def recipes(paths: AppPaths) -> list[Path]:
    """The YAML recipes the form offers: demo recipes first (they fit a CPU), then the rest."""
    if not paths.recipes.is_dir():
        return []
    found = sorted(paths.recipes.glob("*.yaml"))
    return sorted(found, key=lambda p: (not p.stem.endswith("_demo"), p.name))


def start_training(recipe: Path, overrides: Sequence[str], paths: AppPaths) -> Path:
    """Validate the recipe and overrides, then start the run in the background; return its folder.

    Raises:
        ConfigError: the recipe or an override is invalid (checked before anything starts).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = paths.runs / f"{stamp}-{recipe.stem}"
    n = 2
    while run_dir.exists():
        run_dir, n = paths.runs / f"{stamp}-{recipe.stem}-{n}", n + 1
    overrides = [o.strip() for o in overrides if o.strip()]
    if any(o.startswith("train.output=") for o in overrides):
        raise ConfigError("the app chooses train.output itself (a new folder under the runs directory)")
    overrides.append(f"train.output={run_dir}")
    load_config(recipe, overrides)  # raises ConfigError with a one-line message
    run_dir.mkdir(parents=True)
    command = [sys.executable, "-m", "train.train", "--config", str(recipe), "--no-progress", *overrides]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(paths.root), os.environ.get("PYTHONPATH")])))
    with open(run_dir / LOG_FILE, "wb") as log:
        # A new session: the run outlives a browser refresh, and Stop can signal its whole process group.
        process = subprocess.Popen(
            command, cwd=paths.root, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    job = {"pid": process.pid, "command": command, "recipe": str(recipe), "started": time.time()}
    (run_dir / JOB_FILE).write_text(json.dumps(job, indent=2))
    with _LOCK:
        _PROCESSES[str(run_dir)] = process
    return run_dir


def list_runs(paths: AppPaths) -> list[Path]:
    """Runs started from the app, newest first."""
    if not paths.runs.is_dir():
        return []
    runs = [p for p in paths.runs.iterdir() if (p / JOB_FILE).is_file()]
    return sorted(runs, key=lambda p: p.name, reverse=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing, or caught between the engine's write and rename
    return value if isinstance(value, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_state(run_dir: Path) -> RunState:
    """The state of one run, from its process (when this server started it) and its files."""
    run_dir = Path(run_dir)
    job = _read_json(run_dir / JOB_FILE) or {}
    status = _read_json(run_dir / STATUS_FILE)
    kind = (status or {}).get("kind")
    with _LOCK:
        process = _PROCESSES.get(str(run_dir))
    if process is not None:
        code = process.poll()
        state = "running" if code is None else ("done" if code == 0 else "stopped" if code < 0 else "failed")
    elif kind in ("done", "failed"):
        state = kind
    elif job.get("pid") and _alive(int(job["pid"])):
        state = "running"
    else:
        state = "stopped"
    if state == "running" and status is None:
        state = "starting"
    checkpoint = None
    if state == "done":
        for name in ("best.safetensors", "last.safetensors"):
            if (run_dir / name).is_file() and (run_dir / name).with_suffix(".json").is_file():
                checkpoint = run_dir / name
                break
    tail = _tail(run_dir / LOG_FILE) if state in ("failed", "stopped") else ""
    return RunState(run_dir, state, status, checkpoint, tail, job)


def stop_training(run_dir: Path) -> bool:
    """Stop a run this server started (SIGTERM to its process group); False when it is not ours or has ended."""
    with _LOCK:
        process = _PROCESSES.get(str(Path(run_dir)))
    if process is None or process.poll() is not None:
        return False
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)
    return True


def metrics_path(run_dir: Path) -> Path:
    return Path(run_dir) / METRICS_FILE
