"""One run, one folder: an exclusive ``flock`` on ``<output>/.lock`` for the run's lifetime.

Two trainings into one folder used to both finish, leaving one run's ``last``, the other's ``last.prev`` and an
interleaved ``metrics.csv``. ``flock`` is released by the kernel when the holder dies (even by SIGKILL), so a
killed run never leaves a stale lock behind and ``--resume`` can take it at once. The file keeps the holder's PID
for the error message; it is never deleted (deleting a lock file lets two processes lock different inodes).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from fgvc_core.errors import ConfigError, TrainingError

LOCK_NAME = ".lock"
ORPHAN_WAIT_S = 15.0  # how long a lock held only by a dead run's forked workers is waited for


class RunFolderBusy(TrainingError):
    """Another live process is training into the same output folder."""


class RunLock:
    """Context manager holding the lock of one output folder (a no-op when ``enabled`` is False: DDP ranks > 0)."""

    def __init__(self, folder: str | Path, enabled: bool = True) -> None:
        self.folder, self.enabled = Path(folder), enabled
        self._fd: int | None = None
        self._created_folder = False

    def __enter__(self) -> RunLock:
        if self.enabled:
            self.acquire()
        return self

    def __exit__(self, exc_type: type | None, *exc_info: object) -> None:
        self.release(remove_if_unused=exc_type is not None)  # a run that failed before writing leaves no folder

    def acquire(self) -> None:
        for _ in range(3):
            self._make_folder()
            fd = self._lock_file(self.folder / LOCK_NAME)
            if fd is not None:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self._fd = fd
                return
        raise RunFolderBusy(f"the lock file of {self.folder} keeps being replaced; is another training starting there?")

    def _lock_file(self, path: Path) -> int | None:
        """The locked descriptor, or None when the file was removed or replaced while we waited (lock it again)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot write to the output folder {self.folder}: {exc.strerror}") from None
        deadline = time.monotonic() + ORPHAN_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                # A flock is shared with every process forked while it was held: the DataLoader workers of a run
                # killed by SIGKILL keep it until they notice their parent is gone (PyTorch checks every 5 s).
                # The run itself is dead, so wait for them instead of refusing a --resume.
                if _alive(holder) or time.monotonic() > deadline:
                    os.close(fd)
                    raise RunFolderBusy(
                        f"another training (PID {holder}) is writing to {self.folder}; wait for it to end or choose "
                        "another train.output"
                    ) from None
                time.sleep(0.2)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return None
        return fd

    def release(self, remove_if_unused: bool = False) -> None:
        """Drop the lock; with ``remove_if_unused``, also remove a folder this lock created that holds nothing else."""
        if self._fd is None:
            return
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None
        if remove_if_unused and self._created_folder:
            leftovers = [p.name for p in self.folder.iterdir()]
            if leftovers == [LOCK_NAME]:
                (self.folder / LOCK_NAME).unlink()
                self.folder.rmdir()

    def _make_folder(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"train.output {self.folder} is a file, not a folder")
        self._created_folder = self._created_folder or not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the output folder {self.folder}: {exc.strerror}") from None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(pid_text: str) -> bool:
    """Whether the process named in the lock file still runs (an unreadable PID counts as alive: refuse)."""
    try:
        return process_alive(int(pid_text))
    except ValueError:
        return True
