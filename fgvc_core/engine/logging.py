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

from fgvc_core.errors import ConfigError, TrainingError

CSV_HEADER = ["time", "epoch", "step", "split", "name", "value"]


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
        tb_purge_step: int | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.callbacks = list(callbacks or [])
        self.enabled = enabled
        self._start = time.time()
        self._tb = None
        self._csv_file = None
        self.rows = 0  # data rows in metrics.csv: a checkpoint records it so a resume can cut the rows after it
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        csv_path = self.out_dir / "metrics.csv"
        new = not csv_path.exists()
        if not new:
            with open(csv_path, newline="") as handle:
                self.rows = max(sum(1 for _ in csv.reader(handle)) - 1, 0)
        self._csv_file = open(csv_path, "a", newline="")  # append: a resumed run continues the same log
        self._csv = csv.writer(self._csv_file)
        if new:
            self._csv.writerow(CSV_HEADER)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is in requirements.txt
                SummaryWriter = None
            if SummaryWriter is not None:
                # purge_step: TensorBoard drops the events of steps a resumed run does again
                self._tb = SummaryWriter(log_dir=str(self.out_dir / "tb"), purge_step=tb_purge_step)

    def log(self, event: ProgressEvent) -> None:
        if self.enabled:
            try:
                self._write(event)
            except OSError as exc:  # disk full, folder made read-only mid-run, ...
                raise TrainingError(f"cannot write the run log in {self.out_dir}: {exc.strerror or exc}") from None
        for callback in self.callbacks:
            callback(event)

    def _write(self, event: ProgressEvent) -> None:
        now = round(time.time() - self._start, 3)
        for name, value in event.metrics.items():
            self._csv.writerow([now, event.epoch, event.step, event.split, name, f"{float(value):.6g}"])
            self.rows += 1
            if self._tb is not None:
                self._tb.add_scalar(f"{event.split}/{name}", float(value), event.step)
        self._csv_file.flush()
        self._write_status(event)

    def _write_status(self, event: ProgressEvent) -> None:
        status: dict[str, Any] = asdict(event)
        status["fraction"] = event.fraction
        status["updated"] = time.time()
        text = json.dumps(status)
        tmp, final = self.out_dir / ".status.json.tmp", self.out_dir / "status.json"
        try:
            tmp.write_text(text)
            os.replace(tmp, final)
        except OSError:
            if not final.is_file():
                raise
            # A folder that became read-only still lets us rewrite the file in place: the app (and the user) must
            # see "failed", not the last event before the failure. Readers tolerate a torn read (they poll again).
            final.write_text(text)

    def close(self) -> None:
        try:
            if self._tb is not None:
                self._tb.close()
        except OSError:
            pass  # a read-only or full folder: the run already failed and said why; do not hide that error
        finally:
            if self._csv_file is not None:
                self._csv_file.close()


def truncate_metrics(out_dir: str | Path, rows: int | None = None, max_step: int | None = None) -> int:
    """Cut ``metrics.csv`` back to what a resumed run had written, so re-done steps are not logged twice.

    Keeps the first ``rows`` data rows (the count the resumed checkpoint recorded); checkpoints from before that
    count existed keep the rows with ``step <= max_step``. With neither, keeps everything. Returns rows kept.
    """
    path = Path(out_dir) / "metrics.csv"
    if not path.is_file() or (rows is None and max_step is None):
        return 0
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        data = [row for row in reader if len(row) == len(CSV_HEADER)]  # a kill can tear the last line
    if rows is not None:
        kept = data[:rows]
    else:
        kept = [row for row in data if row[2].isdigit() and int(row[2]) <= max_step]
    tmp = path.with_name(".metrics.csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header if header == CSV_HEADER else CSV_HEADER)
        writer.writerows(kept)
    os.replace(tmp, path)
    return len(kept)


def read_metrics_csv(path: str | Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """The engine's long-format ``metrics.csv`` -> ``{(split, name): [(step, value), ...]}`` sorted by step.

    A resumed run appends to the same file and may log a step again; the row written last wins, which is the run
    that continued. Rows whose step or value is not a number are skipped.

    Raises:
        ConfigError: the file is missing or has not the engine's columns.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"metrics file not found: {path}")
    series: dict[tuple[str, str], dict[int, float]] = {}
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not set(CSV_HEADER) <= set(reader.fieldnames):
            raise ConfigError(f"{path.name} has not the columns {', '.join(CSV_HEADER)}")
        for row in reader:
            try:
                step, value = int(float(row["step"])), float(row["value"])
            except (TypeError, ValueError):
                continue
            series.setdefault((row["split"], row["name"]), {})[step] = value
    return {key: sorted(points.items()) for key, points in series.items()}
