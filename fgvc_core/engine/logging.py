"""Run logs: a long-format CSV, TensorBoard scalars, a status file, and callbacks for other front ends.

Every number the loop reports goes through :meth:`RunLogger.log` once and fans out to:
- ``metrics.csv`` (``time, epoch, step, split, name, value``; long format so new metrics never break the header),
- TensorBoard (``split/name`` tags) when ``tensorboard`` is importable,
- ``status.json``: the latest progress, rewritten atomically, which the app polls for a background run,
- user callbacks ``fn(event: ProgressEvent)`` (e.g. a Streamlit progress bar in the same process).
Only the main process writes (DDP ranks > 0 get a silent logger).
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ProgressEvent:
    """One report from the loop. ``kind`` is ``start``, ``step``, ``eval``, ``checkpoint``, ``done`` or ``failed``."""

    kind: str
    epoch: int
    step: int
    total_steps: int
    split: str = "train"
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


Callback = Callable[[ProgressEvent], None]


class RunLogger:
    """Fan-out of progress events to CSV, TensorBoard, ``status.json`` and callbacks."""

    def __init__(
        self,
        out_dir: str | Path,
        callbacks: list[Callback] | None = None,
        enabled: bool = True,
        tensorboard: bool = True,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.callbacks = list(callbacks or [])
        self.enabled = enabled
        self._start = time.time()
        self._tb = None
        self._csv_file = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        csv_path = self.out_dir / "metrics.csv"
        new = not csv_path.exists()
        self._csv_file = open(csv_path, "a", newline="")  # append: a resumed run continues the same log
        self._csv = csv.writer(self._csv_file)
        if new:
            self._csv.writerow(["time", "epoch", "step", "split", "name", "value"])
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is in requirements.txt
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(log_dir=str(self.out_dir / "tb"))

    def log(self, event: ProgressEvent) -> None:
        if self.enabled:
            now = round(time.time() - self._start, 3)
            for name, value in event.metrics.items():
                self._csv.writerow([now, event.epoch, event.step, event.split, name, f"{float(value):.6g}"])
                if self._tb is not None:
                    self._tb.add_scalar(f"{event.split}/{name}", float(value), event.step)
            self._csv_file.flush()
            self._write_status(event)
        for callback in self.callbacks:
            callback(event)

    def _write_status(self, event: ProgressEvent) -> None:
        status: dict[str, Any] = asdict(event)
        status["fraction"] = event.fraction
        status["updated"] = time.time()
        tmp = self.out_dir / ".status.json.tmp"
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self.out_dir / "status.json")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._csv_file is not None:
            self._csv_file.close()
