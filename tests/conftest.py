"""Shared fixtures: every test writes into its own data directory, never the developer's."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DOGS10 = SHARED / "datasets" / "dogs10"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def transfer_lab_home(tmp_path_factory, monkeypatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shared_demo_home(tmp_path_factory) -> Path:
    """One data directory whose generated demo sets are reused by the tests that opt in."""
    return tmp_path_factory.mktemp("shared-home")


@pytest.fixture
def demo_home(shared_demo_home, monkeypatch) -> Path:
    """Point the data directory at the session-wide one, so the demo set is drawn once per size."""
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(shared_demo_home))
    return shared_demo_home


@pytest.fixture(scope="session")
def dogs10() -> Path:
    if not DOGS10.is_dir():
        pytest.skip(f"the shared dogs10 photos are not on this machine ({DOGS10})")
    return DOGS10
