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
