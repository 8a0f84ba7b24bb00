"""The app's Streamlit settings, as the ``streamlit`` command reads them from ``.streamlit/config.toml``."""

import subprocess
import sys
from pathlib import Path

from streamlit.config import ShowErrorDetailsConfigOptions

ROOT = Path(__file__).resolve().parents[1]


def test_uncaught_errors_show_no_traceback_in_the_browser():
    shown = subprocess.run(
        [sys.executable, "-m", "streamlit", "config", "show"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    settings = dict(
        line.split(" = ", 1) for line in shown.stdout.splitlines() if " = " in line and not line.startswith("#")
    )
    value = settings["showErrorDetails"].strip('"')
    assert value in set(ShowErrorDetailsConfigOptions)  # a value Streamlit 1.67 accepts, not a legacy boolean
    assert value == ShowErrorDetailsConfigOptions.TYPE


def test_the_server_runs_on_uvloop_and_parses_http_with_httptools():
    """A class's thirty first page loads are ~100 static requests each: the compiled event loop and HTTP parser
    cut the server's CPU for them by about a quarter (README, classroom figures). Both are picked up only when
    installed, so a missing one would silently cost that."""
    import uvicorn

    config = uvicorn.Config(app=lambda *_: None)
    config.load()
    assert config.http_protocol_class.__module__.endswith("httptools_impl")
    loop = subprocess.run(
        [sys.executable, "-c", "import uvloop; print(uvloop.new_event_loop().__class__.__module__)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loop.returncode == 0 and loop.stdout.strip().startswith("uvloop"), loop.stderr[-1000:]
