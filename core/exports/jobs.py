"""Conversions as background jobs whose state lives in files, so any page, process or restart can read it.

Each run keeps ``runs/<id>/exports/<format>/``: ``status.json`` (state, phase, fraction, error, the converting
process's pid and start time, the model file it was made from), and once verified ``export.zip`` and
``report.json``. Every file is written to a temporary name and renamed, and a conversion clears its format's
folder before it starts, so a zip on disk is always whole and always the verified one. A status that says
"running" while its process is gone (killed, out of memory, a restart) reads as failed: interrupted, convert
again. Exports are cached per run and format, keyed by the model file's name, size and modification time, so a
resumed run (a new model file) reads as outdated and converts again.

``start_exports`` (the page) spawns ``python -m core.exports.worker``, detached; ``convert`` (the worker and the
command line) does the work in the calling process. TensorFlow is imported only by ``convert``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data_home import cannot_write, data_home
from core.errors import ExportError, TransferLabError
from core.exports.formats import ALL, FORMATS, ExportFormat
from core.exports.verification import Report
from core.progress import Progress
from core.runs import get_run, process_alive, run_folder
from core.runs.workers import ROOT, process_start_time

EXPORTS, STATUS, REPORT, ARCHIVE, LOG, LOCK = (
    "exports",
    "status.json",
    "report.json",
    "export.zip",
    "worker.log",
    ".lock",
)
WORK_PREFIX = ".work-"  # a conversion's scratch folder under exports/: .work-<pid>-...
NOT_CONVERTED, QUEUED, RUNNING, DONE, FAILED, OUTDATED = (
    "not converted",
    "queued",
    "running",
    "done",
    "failed",
    "outdated",
)
CALIBRATION_IMAGES = 200  # int8 ranges from a few hundred training images (all of them in a smaller run)
MAX_VERIFY_IMAGES = 1000  # a larger test split is verified on an evenly spaced 1,000
INTERRUPTED = (
    "The conversion was interrupted: its process ended before it finished (killed, out of memory, or the "
    "machine restarted). Nothing it made is kept; convert again."
)
OUTDATED_NOTE = "The run's model changed since this export was made (it was resumed or retrained): convert again."


@dataclass(frozen=True)
class ExportState:
    """Where one format of one run stands, as read from its folder."""

    export_format: ExportFormat
    state: str
    phase: str = ""
    fraction: float = 0.0
    error: str | None = None
    report: Report | None = None
    archive: Path | None = None

    @property
    def busy(self) -> bool:
        return self.state in (QUEUED, RUNNING)

    @property
    def verified(self) -> bool:
        """Done, and agreeing with the Keras model at least as often as its format's threshold asks."""
        return self.state == DONE and self.report is not None and self.report.passed


def exports_folder(run_id: str) -> Path:
    return run_folder(run_id) / EXPORTS


def format_folder(run_id: str, name: str) -> Path:
    return exports_folder(run_id) / name


def chosen_formats(names: str | Sequence[str]) -> list[ExportFormat]:
    """Format names (or ``all``) as table rows, in the table's order; an unknown name is refused by name."""
    wanted = [names] if isinstance(names, str) else list(names)
    if ALL in wanted:
        return list(FORMATS.values())
    unknown = [name for name in wanted if name not in FORMATS]
    if unknown or not wanted:
        raise ExportError(
            f"Unknown export format {', '.join(map(repr, unknown)) or '(none given)'}: choose one of "
            f"{', '.join(FORMATS)}, or {ALL}."
        )
    return [row for name, row in FORMATS.items() if name in wanted]


def run_model(run_id: str) -> Path:
    """The model file a run is exported from (its best epoch's, else its last); refused in words when missing."""
    record = get_run(run_id)
    path = record.model_path
    if path is None:
        raise ExportError(
            f"The run '{record.name}' has no saved model to export (no model_best.keras or model_last.keras in "
            f"{record.folder}): it has not finished an epoch, or its files were removed. Train or resume the run, "
            "then convert again."
        )
    return path


def model_key(path: Path) -> str:
    """Which model file an export was made from: its name, size and modification time."""
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


# ------------------------------------------------------------------------------------------ reading the state


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent, or written by something else: read as not converted
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(json.dumps(value, indent=1), encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _alive(status: dict) -> bool:
    return process_alive(status.get("pid"), status.get("pid_started"))


def export_state(run_id: str, export_format: ExportFormat, key: str | None) -> ExportState:
    """One format's state; ``key`` is the run's current ``model_key`` (None when it has no model)."""
    folder = format_folder(run_id, export_format.name)
    status = _read_json(folder / STATUS)
    if status is None:
        return ExportState(export_format, NOT_CONVERTED)
    state = status.get("state")
    if state in (QUEUED, RUNNING):
        if _alive(status):
            return ExportState(export_format, state, status.get("phase", ""), float(status.get("fraction", 0.0)))
        _clear(folder)
        _clear_dead_work(run_id)
        return ExportState(export_format, FAILED, error=INTERRUPTED)
    if state == DONE:
        report = _read_json(folder / REPORT)
        archive = folder / ARCHIVE
        if report is None or not archive.is_file():
            return ExportState(export_format, FAILED, error="The export's files are missing: convert again.")
        if status.get("model_key") != key:
            return ExportState(export_format, OUTDATED, error=OUTDATED_NOTE, report=Report.from_dict(report))
        return ExportState(export_format, DONE, report=Report.from_dict(report), archive=archive, fraction=1.0)
    return ExportState(export_format, FAILED, error=status.get("error") or "The conversion failed: convert again.")


def export_states(run_id: str) -> list[ExportState]:
    """Every format's state for a run, in the table's order: cheap (a few small files), for a page to poll."""
    path = get_run(run_id).model_path
    key = model_key(path) if path else None
    return [export_state(run_id, row, key) for row in FORMATS.values()]


# ------------------------------------------------------------------------------------------ writing it


def _status(run_id: str, export_format: ExportFormat, state: str, **values) -> None:
    _write_json(
        format_folder(run_id, export_format.name) / STATUS,
        {
            "format": export_format.name,
            "state": state,
            "pid": values.pop("pid", os.getpid()),
            "pid_started": values.pop("pid_started", process_start_time(os.getpid())),
            "updated_at": time.time(),
            **values,
        },
    )


def _clear(folder: Path) -> None:
    """Remove an export's zip, report and temporary files (not its status): nothing stale or half-made stays."""
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if path.name in (ARCHIVE, REPORT) or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)


def _clear_dead_work(run_id: str) -> None:
    """Scratch folders of conversions whose process is gone (a SavedModel of tens of MB each)."""
    with contextlib.suppress(OSError):
        for path in exports_folder(run_id).glob(f"{WORK_PREFIX}*"):
            pid = path.name[len(WORK_PREFIX) :].partition("-")[0]
            if not (pid.isdigit() and process_alive(int(pid))):
                shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _locked(run_id: str) -> Iterator[None]:
    """One starter at a time per run: two clicks (two browsers) never spawn two conversions of one format. A
    folder that cannot be written (read-only, full) is one sentence naming it, before anything is converted."""
    folder = exports_folder(run_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError as error:
        raise cannot_write(folder, error, then="convert again") from error


def _to_convert(run_id: str, formats: list[ExportFormat], key: str) -> list[ExportFormat]:
    """The formats not already done for this model and not being converted by another process."""
    todo = []
    for row in formats:
        current = export_state(run_id, row, key)
        status = _read_json(format_folder(run_id, row.name) / STATUS) or {}
        if current.state == DONE or (current.busy and status.get("pid") != os.getpid()):
            continue
        todo.append(row)
    return todo


def start_exports(run_id: str, names: str | Sequence[str]) -> list[str]:
    """Convert and verify in a detached ``python -m core.exports.worker``; returns the formats it took on (the
    ones already done for this model, or being converted, are left as they are)."""
    formats = chosen_formats(names)
    key = model_key(run_model(run_id))
    with _locked(run_id):
        todo = _to_convert(run_id, formats, key)
        if not todo:
            return []
        _clear_dead_work(run_id)
        process = _spawn(run_id, [row.name for row in todo])
        for row in todo:
            _clear(format_folder(run_id, row.name))
            _status(
                run_id,
                row,
                QUEUED,
                pid=process.pid,
                pid_started=process_start_time(process.pid),
                phase="starting",
                fraction=0.0,
            )
    return [row.name for row in todo]


def _spawn(run_id: str, names: list[str]) -> subprocess.Popen:
    folder = exports_folder(run_id)
    env = {
        **os.environ,
        "TRANSFER_LAB_HOME": str(data_home()),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    }
    with open(folder / LOG, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "core.exports.worker", "--run", run_id, *[f"--format={name}" for name in names]],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# ------------------------------------------------------------------------------------------ converting


def convert(run_id: str, names: str | Sequence[str], progress: Progress | None = None) -> list[ExportState]:
    """Convert, verify and package the chosen formats of a run in this process, recording each step in its
    status file; returns their states. Formats already done for this model are kept (cached). A missing or
    unreadable model raises (typed, with the fix) after marking the formats failed; a converter that fails
    marks only its own format failed."""
    formats = chosen_formats(names)
    try:
        key = model_key(run_model(run_id))
    except TransferLabError as error:
        for row in formats:
            _status(run_id, row, FAILED, error=str(error))
        raise
    with _locked(run_id):
        todo = _to_convert(run_id, formats, key)
        _clear_dead_work(run_id)
        for row in todo:
            _clear(format_folder(run_id, row.name))
            _status(run_id, row, QUEUED, phase="waiting for the formats before it", fraction=0.0)
    if todo:
        _convert_all(run_id, todo, key, progress)
    return [export_state(run_id, row, key) for row in formats]


def _convert_all(run_id: str, todo: list[ExportFormat], key: str, progress: Progress | None) -> None:
    from core.data import load_splits
    from core.exports.bundle import model_card, write_zip
    from core.exports.converters import Source
    from core.exports.verification import verify
    from core.predictions import run_predictions
    from core.serving.classifiers import classifier_for_run

    def step(row: ExportFormat, phase: str, fraction: float) -> None:
        _status(run_id, row, RUNNING, phase=phase, fraction=fraction)
        if progress:
            progress(round(100 * fraction), 100, f"{row.name}: {phase}")

    try:
        step(todo[0], "loading the model and the Keras predictions on the test split", 0.02)
        classifier = classifier_for_run(run_id)
        keras = run_predictions(run_id)
        record = get_run(run_id)
        splits = load_splits(record.config.data, classifier.image_size)
    except Exception as error:
        message = str(error) if isinstance(error, TransferLabError) else _failure("loading the run", error)
        for row in todo:
            _status(run_id, row, FAILED, error=message)
        if isinstance(error, TransferLabError):
            raise
        raise ExportError(message) from error
    calibration = _calibration(splits.train, splits.info.num_train)
    test_images = _test_images(splits.test, keras.num_examples)
    exports = exports_folder(run_id)
    with tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=exports) as work:
        source = Source(classifier.model, classifier.image_size, Path(work), calibration)
        for row in todo:
            folder = format_folder(run_id, row.name)
            try:
                step(row, _converting_phase(row, splits.info.num_train), 0.1)
                target = Path(work) / row.name / row.model_file
                target.parent.mkdir(parents=True)
                row.converter(source, target)
                step(row, f"verifying on {min(keras.num_examples, MAX_VERIFY_IMAGES)} test images", 0.6)
                report = verify(
                    row,
                    target,
                    test_images(),
                    keras,
                    lambda done, total, message, row=row: step(row, message, 0.6 + 0.35 * done / max(total, 1)),
                )
                card = model_card(
                    row,
                    run_id=run_id,
                    run_name=record.name,
                    image_size=classifier.image_size,
                    class_names=classifier.class_names,
                    report=report,
                )
                step(row, "packaging the zip", 0.95)
                write_zip(folder / ARCHIVE, row, target, card, classifier.class_names)
                _write_json(folder / REPORT, report.to_dict())
                _status(run_id, row, DONE, model_key=key, fraction=1.0, phase="done")
                if progress:
                    progress(100, 100, report.line())
            except Exception as error:
                _clear(folder)
                message = str(error) if isinstance(error, TransferLabError) else _failure(row.label, error)
                _status(run_id, row, FAILED, error=message)
                if progress:
                    progress(100, 100, f"{row.name}: failed: {message}")


def _converting_phase(row: ExportFormat, num_train: int) -> str:
    if row.input_dtype == "uint8":
        return f"converting, calibrating int8 on {min(CALIBRATION_IMAGES, num_train)} training images"
    return "converting"


def _failure(what: str, error: Exception) -> str:
    detail = " ".join(str(error).split())[:300]
    return (
        f"The {what} conversion failed ({type(error).__name__}: {detail}). The other formats may still work; the "
        f"details are in the run's {EXPORTS}/{LOG}."
    )


def _calibration(train, num_train: int) -> Callable[[], Iterator[np.ndarray]]:
    """Up to ``CALIBRATION_IMAGES`` training images spread over the split (it is ordered by class)."""
    count = max(1, min(CALIBRATION_IMAGES, num_train))
    stride = max(1, num_train // count)

    def images() -> Iterator[np.ndarray]:
        for image, _ in train.shard(stride, 0).take(count).as_numpy_iterator():
            yield image.astype(np.uint8)

    return images


def _test_images(test, count: int) -> Callable[[], Iterator[tuple[int, np.ndarray]]]:
    """(position, uint8 image) over the test split, every image up to ``MAX_VERIFY_IMAGES``, else evenly spaced."""
    stride = max(1, math.ceil(count / MAX_VERIFY_IMAGES))

    def images() -> Iterator[tuple[int, np.ndarray]]:
        for position, (image, _) in enumerate(test.as_numpy_iterator()):
            if position >= count:
                raise ExportError("The run's test split changed while it was being verified: convert again.")
            if position % stride == 0:
                yield position, image.astype(np.uint8)

    return images
