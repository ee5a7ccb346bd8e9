"""``fgvc-app``: start the Streamlit explorer from a checkout or an installed wheel.

Streamlit runs its entry script as a file, so ``app.py`` and ``pages/`` stay files: at the repository root in a
checkout, in ``<prefix>/share/fgvc-explorer`` once installed (the wheel's data files, see pyproject.toml).
Arguments after ``fgvc-app`` go to ``streamlit run`` (e.g. ``fgvc-app --server.port 8502``).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

from fgvc_core.errors import FGVCError

APP_FILE = "app.py"


def find_app() -> Path:
    """The ``app.py`` to run: the checkout's, else the installed one.

    Raises:
        FGVCError: neither exists (an installation without its data files).
    """
    candidates = [
        Path(__file__).resolve().parent.parent / APP_FILE,  # a checkout: fgvc_core/ sits beside app.py
        Path(sysconfig.get_path("data")) / "share" / "fgvc-explorer" / APP_FILE,
    ]
    for path in candidates:
        if path.is_file() and (path.parent / "pages").is_dir():
            return path
    raise FGVCError("the explorer's app.py was not found; tried " + ", ".join(map(str, candidates)))


def streamlit_command(app: Path, extra: list[str]) -> list[str]:
    # The file watcher trips over torch.classes (see app.py), so it is off unless asked for.
    # no full gc.collect(2) after each rerun: ~0.5 s per slider step here (see .streamlit/config.toml)
    flags = ["--server.fileWatcherType", "none", "--runner.postScriptGC", "false"]
    return [sys.executable, "-m", "streamlit", "run", str(app), *flags, *extra]


def cli(argv: list[str] | None = None) -> int:
    """The ``fgvc-app`` console script; returns streamlit's exit status."""
    try:
        app = find_app()
    except FGVCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return subprocess.call(streamlit_command(app, list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(cli())
