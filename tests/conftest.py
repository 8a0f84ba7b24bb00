"""Shared fixtures: every test writes into its own data directory, never the developer's."""

import os
from pathlib import Path

import pytest

from core.config import RunConfig

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


@pytest.fixture
def demo_32_linked(demo_home, transfer_lab_home, monkeypatch) -> Path:
    """The 32 px demo set, drawn once per session and linked into this test's own data directory."""
    from core import demo

    folder = demo.folder_path(32)
    shared = demo_home / "datasets" / folder.name
    if not shared.exists():
        demo.demo_folder(32)
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(transfer_lab_home))
    (transfer_lab_home / "datasets").mkdir(exist_ok=True)
    (transfer_lab_home / "datasets" / folder.name).symlink_to(shared, target_is_directory=True)
    return transfer_lab_home


@pytest.fixture(scope="session")
def dogs10() -> Path:
    if not DOGS10.is_dir():
        pytest.skip(f"the shared dogs10 photos are not on this machine ({DOGS10})")
    return DOGS10


@pytest.fixture(scope="session")
def tiny_run():
    """``tiny_run(home, name=..., test_images=...)`` trains one finished run for pages to show."""
    return train_tiny_run


def train_tiny_run(home: Path, *, name: str, test_images: int = 0, data=None, backbone: str | None = None) -> str:
    """One finished 1-epoch frozen run on 32 px demo images (36 training, ``test_images`` test), or on ``data``
    (a ``DataConfig``) when given, with the default backbone or ``backbone``, trained in this process into the
    data directory ``home``; returns its id."""
    from core import runs
    from core.config import AUGMENT_PRESETS, DataConfig, ModelConfig, TrainConfig
    from core.training import engine

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(home))
        config = RunConfig(
            name=name,
            data=data or DataConfig(source="demo", max_train_images=36, max_test_images=test_images),
            augment=AUGMENT_PRESETS["none"],
            model=ModelConfig(
                regime="frozen", weights="none", image_size=32, **({"backbone": backbone} if backbone else {})
            ),
            train=TrainConfig(epochs=1, batch_size=9),
        )
        run_id = runs.create_run(config, runs.FOREGROUND)
        assert runs.claim_foreground(run_id)
        engine.execute(run_id)
        assert runs.get_run(run_id).status == runs.COMPLETED
    return run_id
