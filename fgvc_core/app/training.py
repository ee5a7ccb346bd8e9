"""Training runs started from the app: ``python -m train.train`` in the background, watched through its logs.

Each run gets its own folder under the runs directory (``runs/app/<time>-<recipe>``). The app never trains in its
own process: a subprocess keeps the page responsive, survives a browser refresh, and writes what the engine
always writes: ``status.json`` (progress), ``metrics.csv`` (curves), ``best.safetensors`` (the new checkpoint,
which the sidebar then lists). ``app_job.json`` records the command and process id, ``train.log`` its output.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fgvc_core.app.allowed import NOT_AVAILABLE, AllowedRoots, PathNotAvailable, allowed_roots, is_inside, redact_paths
from fgvc_core.app.settings import AppPaths
from fgvc_core.engine.config import load_config
from fgvc_core.engine.runlock import process_alive
from fgvc_core.errors import ConfigError, FGVCError

JOB_FILE, LOG_FILE, STATUS_FILE, METRICS_FILE = "app_job.json", "train.log", "status.json", "metrics.csv"
START_LOCK = ".start.lock"
DEFAULT_MAX_RUNS = 1
# What a visitor may override: numbers and choices of the model and the schedule. Never a path (data.root,
# model.pretrained, train.output), never the dataset (data.name), never the device or the loaders' processes.
OVERRIDABLE: tuple[str, ...] = (
    "model.variant",
    "model.delta",
    "model.omega",
    "model.alpha",
    "model.beta",
    "model.gamma",
    "model.threshold",
    "model.head_fusion",
    "model.rollout_query",
    "model.scale_loss_weights",
    "model.drop_rate",
    "train.epochs",
    "train.max_steps",
    "train.lr",
    "train.batch_size",
    "train.seed",
    "train.warmup_steps",
    "train.weight_decay",
    "train.momentum",
    "train.grad_clip",
    "train.log_every",
    "data.train_samples",
    "data.seed",
)
# Upper bounds on what a visitor may ask of the shared server (the config rules only check types and signs): a batch
# of 10^6 images or a billion steps is a denial of service, not an experiment. The CLI has no such caps.
SERVER_CAPS: dict[str, int] = {
    "train.epochs": 1000,
    "train.max_steps": 1_000_000,
    "train.batch_size": 256,
    "train.warmup_steps": 100_000,
    "data.train_samples": 200_000,
}
# Popen handles of the runs this server started (shared by sessions: the runs folder is shared too), so that a
# finished child is reaped and its exit code read; runs started by an earlier server are judged from their files.
_PROCESSES: dict[str, subprocess.Popen] = {}
_LOCK = threading.RLock()  # re-entrant: start_training counts the active runs while it holds it


class RunLimitReached(FGVCError):
    """The server already runs as many background trainings as ``FGVC_MAX_RUNS`` allows."""


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

    Only the keys of ``OVERRIDABLE`` may be overridden (no path ever comes from the page), the recipe must be one
    the form offers, its own paths must lie in the allowed roots, and at most ``max_runs()`` runs may be active.

    Raises:
        ConfigError: the recipe or an override is invalid, or a key is not overridable (checked before anything
            starts).
        PathNotAvailable: the recipe's ``data.root`` or ``model.pretrained`` lies outside the allowed roots.
        RunLimitReached: this server already runs ``max_runs()`` trainings.
    """
    recipe = Path(recipe)
    if recipe.resolve() not in {r.resolve() for r in recipes(paths)}:
        raise ConfigError(f"{recipe.name} is not one of the recipes this app offers")
    overrides = checked_overrides(overrides)
    check_server_caps(load_config(recipe, overrides))  # before anything is written or locked
    limit = max_runs()
    with _LOCK, _start_lock(paths):  # count and start as one step: two sessions submitting at once get one run
        running = active_runs(paths)
        if len(running) >= limit:
            raise RunLimitReached(run_limit_message(len(running), limit))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = paths.runs / f"{stamp}-{recipe.stem}"
        n = 2
        while run_dir.exists():
            run_dir, n = paths.runs / f"{stamp}-{recipe.stem}-{n}", n + 1
        overrides.append(f"train.output={run_dir}")
        config = load_config(recipe, overrides)  # raises ConfigError with a one-line message
        check_recipe_paths(config, allowed_roots(paths), paths.root)
        run_dir.mkdir(parents=True)
        command = [sys.executable, "-m", "train.train", "--config", str(recipe), "--no-progress", *overrides]
        python_path = os.pathsep.join(filter(None, [str(paths.root), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONPATH=python_path)
        with open(run_dir / LOG_FILE, "wb") as log:
            # A new session: the run outlives a browser refresh, and Stop can signal its whole process group.
            process = subprocess.Popen(
                command, cwd=paths.root, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        job = {"pid": process.pid, "command": command, "recipe": str(recipe), "started": time.time()}
        (run_dir / JOB_FILE).write_text(json.dumps(job, indent=2))
        _PROCESSES[str(run_dir)] = process
    return run_dir


def checked_overrides(overrides: Sequence[str]) -> list[str]:
    """The form's ``key=value`` lines, stripped, each key in ``OVERRIDABLE`` (blank lines and ``#`` comments go).

    Raises:
        ConfigError: a line without ``=``, or a key the app does not let a visitor set (one line naming it).
    """
    checked = []
    for line in overrides:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {line[:80]!r} must look like section.key=value")
        if key == "train.output":
            raise ConfigError("the app chooses train.output itself (a new folder under the runs directory)")
        if key not in OVERRIDABLE:
            raise ConfigError(
                f"{key[:80]} cannot be set from the app; the keys it lets you override are {', '.join(OVERRIDABLE)}"
            )
        checked.append(f"{key}={value.strip()}")
    return checked


def check_server_caps(config: Mapping[str, Any]) -> None:
    """Refuse a run larger than ``SERVER_CAPS`` allows (one line naming the key and its cap).

    Raises:
        ConfigError: a capped value above its cap.
    """
    for dotted, cap in SERVER_CAPS.items():
        section, key = dotted.split(".")
        value = (config.get(section) or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
            raise ConfigError(f"{dotted}={value} is more than this server allows (at most {cap})")


def check_recipe_paths(config: Mapping[str, Any], roots: AllowedRoots, base: Path) -> None:
    """Refuse a recipe whose dataset root or pretrained weights lie outside the allowed roots.

    Raises:
        PathNotAvailable: ``"data.root: not available here"`` (or ``model.pretrained``), saying nothing more.
    """
    pretrained = config["model"].get("pretrained")
    checks = [("data.root", config["data"].get("root"), roots.data)]
    if pretrained not in (None, False):
        checks.append(("model.pretrained", pretrained, roots.checkpoints))
    for key, value, allowed in checks:
        if value is None:
            continue
        if not isinstance(value, (str, Path)) or not is_inside(value, allowed, base):
            raise PathNotAvailable(f"this recipe's {key}: {NOT_AVAILABLE}")


def max_runs() -> int:
    """How many background runs this server may run at once: ``FGVC_MAX_RUNS`` (default 1; 0 disables training).

    Raises:
        ConfigError: the variable is not a whole number >= 0.
    """
    value = os.environ.get("FGVC_MAX_RUNS", "").strip()
    if not value:
        return DEFAULT_MAX_RUNS
    if not value.isdigit():
        raise ConfigError(f"FGVC_MAX_RUNS must be a whole number >= 0, got {value[:20]!r}")
    return int(value)


def run_limit_message(running: int, limit: int) -> str:
    if limit == 0:
        return "training from the app is switched off on this server (FGVC_MAX_RUNS=0)"
    runs = "run is" if running == 1 else "runs are"
    return (
        f"{running} training {runs} already running on this server (at most {limit} at a time); "
        "wait for it to finish or stop it below"
    )


def active_runs(paths: AppPaths) -> list[Path]:
    """The runs in the runs folder that are starting or running (this server's, or an earlier server's)."""
    return [run for run in list_runs(paths) if run_state(run).active]


@contextmanager
def _start_lock(paths: AppPaths) -> Iterator[None]:
    """An exclusive file lock on the runs folder, so servers sharing it also start one run at a time."""
    paths.runs.mkdir(parents=True, exist_ok=True)
    with open(paths.runs / START_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit|Warning))\b:?\s*(.*)$"
)
REASON_LIMIT = 300


def failure_reason(log_tail: str, status: Mapping[str, Any] | None, roots: Sequence[Path]) -> str:
    """Why a run failed, in one short line fit for a visitor: no traceback, no path outside ``roots``.

    The engine's ``failed`` status message wins; else the log's last error line (``error: …`` from the CLI, or
    the exception line that ends a traceback), with the exception's module prefix dropped.
    """
    message = str((status or {}).get("message") or "") if (status or {}).get("kind") == "failed" else ""
    line = next((ln.strip() for ln in message.splitlines() if ln.strip()), "")
    if not line:
        line = _last_error_line(log_tail)
    if not line:
        return "no error message in its log"
    match = _EXCEPTION_LINE.match(line)
    if match:
        line = f"{match.group(1)}: {match.group(2)}".rstrip(": ")
    line = redact_paths(line, roots)
    return line if len(line) <= REASON_LIMIT else line[: REASON_LIMIT - 1] + "…"


def _last_error_line(log_tail: str) -> str:
    lines = [ln.rstrip() for ln in log_tail.splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: ") :]
        if _EXCEPTION_LINE.match(line):
            return line
    # No recognisable error: the last line that is not part of a traceback frame.
    frames = [ln for ln in lines if not ln.startswith((" ", "\t", "Traceback")) and not set(ln) <= set("^~ ")]
    return frames[-1] if frames else ""


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
    elif job.get("pid") and not job.get("stopped") and process_alive(int(job["pid"])):
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
    """Stop a run this server started (SIGTERM to its process group); False when it is not ours or has ended.

    The stop is recorded in ``app_job.json``, so the run reads as stopped (not failed) after a server restart too.
    """
    with _LOCK:
        process = _PROCESSES.get(str(Path(run_dir)))
    if process is None or process.poll() is not None:
        return False
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)
    job = _read_json(Path(run_dir) / JOB_FILE) or {}
    (Path(run_dir) / JOB_FILE).write_text(json.dumps({**job, "stopped": time.time()}, indent=2))
    return True


def metrics_path(run_dir: Path) -> Path:
    return Path(run_dir) / METRICS_FILE


def metrics_series(run_dir: Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """The run's logged curves ``{(split, name): [(step, value), ...]}`` (ConfigError while there is no log)."""
    from fgvc_core.engine.logging import read_metrics_csv

    return read_metrics_csv(metrics_path(run_dir))
