"""A headless ``streamlit run app.py`` on a free local port, for the browser tests and the latency benchmark.

Both drive the real app in Chromium; this is the one place that starts it, waits for its health endpoint and
stops it. Only the loopback address is used.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class AppDidNotStart(RuntimeError):
    """The server exited or did not answer its health check in time; the message holds the end of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(
    tree: Path, env: dict[str, str], log_path: Path | None = None, timeout_s: float = 120.0
) -> Iterator[str]:
    """Run ``tree/app.py`` headless (cwd ``tree``, so its ``.streamlit/config.toml`` applies); yield its URL.

    Raises:
        AppDidNotStart: with the last 2000 characters of the log (when ``log_path`` is given).
    """
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.fileWatcherType", "none", "--server.port", str(port),
               "--browser.gatherUsageStats", "false"]  # fmt: skip
    log = open(log_path, "wb") if log_path is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(command, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        if log_path is not None:
            log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:] if log_path is not None else ""
                raise AppDidNotStart(f"streamlit did not start in {tree}: {tail}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
