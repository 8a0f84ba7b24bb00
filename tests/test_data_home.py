"""A data directory that is a file, sits under a file, is read-only or is on a full disk: one sentence naming
the folder and the fix instead of a traceback, and reading what it holds keeps working. Read-only and full
disks are real refusals from the kernel (see faults.py), not file modes that root would ignore."""

import errno
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import faults
from core import data_home, runs
from core.config import AUGMENT_PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig
from core.errors import DataHomeUnavailable

TRAIN_ARGS = [
    "-m",
    "core.training",
    "--dataset",
    "demo",
    "--regime",
    "frozen",
    "--weights",
    "none",
    "--image-size",
    "32",
    "--epochs",
    "1",
    "--max-train-images",
    "8",
    "--max-test-images",
    "8",
]


def config(name: str) -> RunConfig:
    return RunConfig(
        name=name,
        data=DataConfig(source="demo", max_train_images=16, max_test_images=8),
        augment=AUGMENT_PRESETS["none"],
        model=ModelConfig(regime="frozen", weights="none", image_size=32),
        train=TrainConfig(epochs=3, batch_size=8),
    )


def store_with_runs() -> tuple[str, str]:
    """A finished run with one epoch, and a 'running' run whose process is gone (reconcile must write)."""
    finished = runs.create_run(config("finished-before-the-disk-filled"))
    runs.record_epoch(finished, 1, {"loss": 1.0, "accuracy": 0.5, "val_accuracy": 0.25})
    runs.finish_run(finished, runs.STOPPED)
    orphan = runs.create_run(config("orphaned-worker"))
    process = subprocess.Popen(["true"])
    process.wait()
    with runs.connect() as db:
        db.execute("UPDATE runs SET status = 'running', pid = ? WHERE id = ?", (process.pid, orphan))
    return finished, orphan


def one_sentence(text: str, folder: Path) -> None:
    assert "Traceback" not in text, text
    assert str(folder) in text and "TRANSFER_LAB_HOME" in text, text


# ---------------------------------------------------------------------------------------------- in this process


def test_a_data_directory_that_is_a_file_is_a_typed_error_naming_it(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(blocker))
    with pytest.raises(DataHomeUnavailable, match="is a file, not a folder") as error:
        runs.list_runs()
    one_sentence(str(error.value), blocker)

    below = blocker / "home"
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(below))
    with pytest.raises(DataHomeUnavailable, match=f"because {blocker} is a file") as error:
        runs.create_run(config("x"))
    one_sentence(str(error.value), below)


def test_a_data_directory_that_cannot_be_created_says_read_only_or_full(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(tmp_path / "new" / "home"))
    for code, words in ((errno.EROFS, "is read-only"), (errno.ENOSPC, "The disk is full: free space in")):

        def refuse(self, *args, code=code, **kwargs):
            raise OSError(code, os.strerror(code), str(self))

        monkeypatch.setattr(Path, "mkdir", refuse)
        with pytest.raises(DataHomeUnavailable, match=words) as error:
            data_home.data_home()
        one_sentence(str(error.value), tmp_path)


# ---------------------------------------------------------------------------------------------- the command lines


@pytest.fixture
def reader_home(tmp_path):
    yield tmp_path
    faults.make_writable(tmp_path)


@pytest.mark.parametrize("case", ["a file", "under a file", "read-only"])
def test_the_command_lines_exit_2_with_one_sentence(case, reader_home):
    from PIL import Image

    photo = reader_home / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    if case == "a file":
        target = reader_home / "home"
        target.write_text("")
    elif case == "under a file":
        (reader_home / "file").write_text("")
        target = reader_home / "file" / "home"
    else:
        target = reader_home
    faults.make_read_only(reader_home)
    result = faults.run_as_reader(TRAIN_ARGS, target)
    assert result.returncode == 2, result.stderr[-3000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("python -m core.training: error:")]
    assert len(error_lines) == 1, result.stderr[-3000:]
    one_sentence(result.stderr, target)
    expected = {
        "a file": "is a file, not a folder",
        "under a file": "is a file, not a folder",
        "read-only": "is read-only",
    }[case]
    assert expected in error_lines[0]
    if case != "read-only":  # a read-only data directory without runs has no run to classify with
        predicted = faults.run_as_reader(["-m", "core.serving", "--run", "some-run", str(photo)], target)
        assert predicted.returncode == 2 and expected in predicted.stderr, predicted.stderr[-3000:]
        one_sentence(predicted.stderr, target)


@pytest.mark.slow
def test_a_read_only_copy_of_a_home_with_a_run_still_classifies_and_shows_its_runs(reader_home, tiny_run, monkeypatch):
    from PIL import Image

    run_id = tiny_run(reader_home, name="trained-before-read-only", test_images=9)
    photo = reader_home / "photo.png"
    Image.new("RGB", (40, 30), (200, 120, 40)).save(photo)
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(reader_home))
    finished, orphan = store_with_runs()
    faults.make_read_only(reader_home)

    predicted = faults.run_as_reader(["-m", "core.serving", "--run", run_id, str(photo)], reader_home)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    line = json.loads(predicted.stdout.strip().splitlines()[-1])
    assert line["file"] == str(photo) and len(line["top5"]) == 5, line

    shown = faults.run_as_reader(["-c", PAGE_SCRIPT], reader_home)
    assert shown.returncode == 0, shown.stderr[-3000:]
    page = json.loads(shown.stdout.strip().splitlines()[-1])
    assert not page["exceptions"] and not page["errors"], page
    assert page["home"] == {"exceptions": [], "errors": [], "cache": True}
    assert {"trained-before-read-only", "finished-before-the-disk-filled", "orphaned-worker"} <= set(page["runs"])
    assert any("is read-only" in text and str(reader_home) in text for text in page["warnings"]), page
    assert page["write"].startswith("DataHomeUnavailable: The data directory") and "read-only" in page["write"]


# ---------------------------------------------------------------------------------------------- a full disk

HARNESS = "from streamlit.testing.v1 import AppTest"
PAGE_SCRIPT = """
import json
from streamlit.testing.v1 import AppTest
from core import runs
from core.errors import TransferLabError

at = AppTest.from_file("dashboard/app.py", default_timeout=120)
at.run()
home = {"exceptions": [e.message for e in at.exception], "errors": [e.value for e in at.error],
        "cache": any("stored backbone features" in m.value for m in at.markdown)}
at.switch_page("app_pages/train.py").run()
try:
    runs.create_run(runs.get_run(runs.list_runs()[0].id).config)
    write = "written"
except TransferLabError as error:
    write = f"{type(error).__name__}: {error}"
print(json.dumps({"home": home, "exceptions": [e.message for e in at.exception], "errors": [e.value for e in at.error],
                  "warnings": [w.value for w in at.warning], "write": write,
                  "runs": [label.rsplit(" · ", 1)[0] for label in at.dataframe[0].value["run"]]
                          if at.dataframe else []}))
"""


def test_a_full_disk_still_lists_the_runs_and_every_write_says_free_space(transfer_lab_home):
    finished, orphan = store_with_runs()
    assert not list(transfer_lab_home.glob("runs.sqlite-*"))  # closed cleanly: a reader must create the WAL files

    listed = faults.run_full(
        "import json\nfrom core import runs\n"
        "dead = runs.reconcile()\n"
        "print(json.dumps({'dead': dead, 'runs': {r.id: [r.status, r.epochs_done] for r in runs.list_runs()},"
        f" 'epochs': [e.epoch for e in runs.epochs({finished!r})]}}))",
        transfer_lab_home,
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    seen = json.loads(listed.stdout.strip().splitlines()[-1])
    assert seen == {"dead": [], "runs": {finished: ["stopped", 1], orphan: ["running", 0]}, "epochs": [1]}

    shown = faults.run_full(PAGE_SCRIPT, transfer_lab_home, before=HARNESS)
    assert shown.returncode == 0, shown.stderr[-3000:]
    page = json.loads(shown.stdout.strip().splitlines()[-1])
    assert not page["exceptions"] and not page["errors"], page
    assert page["home"] == {"exceptions": [], "errors": [], "cache": True}
    assert set(page["runs"]) == {"finished-before-the-disk-filled", "orphaned-worker"}
    assert any(f"The disk is full: free space in {transfer_lab_home}" in text for text in page["warnings"]), page
    assert page["write"].startswith(f"DataHomeUnavailable: The disk is full: free space in {transfer_lab_home}")

    time.sleep(0.05)
    assert runs.reconcile() == [orphan]  # with room again, the housekeeping that could not be written happens
