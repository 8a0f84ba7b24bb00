import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from core import demo

ROOT = Path(__file__).resolve().parents[1]


def test_render_is_deterministic_and_sized():
    a = np.asarray(demo.render(3, "train", 7, 48))
    b = np.asarray(demo.render(3, "train", 7, 48))
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)


def test_examples_differ_between_index_split_and_class():
    base = np.asarray(demo.render(0, "train", 0, 32)).astype(int)
    for other in (demo.render(0, "train", 1, 32), demo.render(0, "test", 0, 32), demo.render(1, "train", 0, 32)):
        assert np.abs(base - np.asarray(other).astype(int)).mean() > 5


def test_enough_distinct_classes():
    assert len(demo.CLASS_NAMES) >= 6
    assert demo.CLASS_NAMES == sorted(demo.CLASS_NAMES)  # the order a folder of class folders is read in


def test_folder_is_written_once_completely():
    calls = []
    root = demo.demo_folder(24, progress=lambda done, total, msg: calls.append((done, total)))
    assert (root / "COMPLETE").exists()
    files = sorted(root.rglob("*.png"))
    per_class = demo.TRAIN_PER_CLASS + demo.TEST_PER_CLASS
    assert len(files) == len(demo.CLASS_NAMES) * per_class
    assert demo.TRAIN_PER_CLASS >= 150 and demo.TEST_PER_CLASS >= 50
    assert calls[-1][0] == calls[-1][1]
    mtime = files[0].stat().st_mtime
    assert demo.demo_folder(24) == root and files[0].stat().st_mtime == mtime


def test_render_file_matches_the_file_on_disk(demo_home):
    root = demo.demo_folder(32)
    path, _ = demo.split_items(root, "test")[17]
    assert np.array_equal(np.asarray(demo.render_file(path, 32)), np.asarray(__import__("PIL.Image").Image.open(path)))


# ---------------------------------------------------------------------------------------------- leftovers


def _stagings(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "datasets").iterdir() if p.name.startswith("demo-v") and "." in p.name)


def test_a_drawing_killed_midway_leaves_nothing_once_the_set_is_next_opened(transfer_lab_home):
    drawer = subprocess.Popen(
        [sys.executable, "-c", "from core import demo; demo.demo_folder(16)"],
        cwd=ROOT,
        env={**os.environ, "TRANSFER_LAB_HOME": str(transfer_lab_home)},
    )
    deadline = time.monotonic() + 120
    while not (transfer_lab_home / "datasets").is_dir() or not _stagings(transfer_lab_home):
        assert drawer.poll() is None and time.monotonic() < deadline, "the drawing ended before it could be killed"
        time.sleep(0.01)
    drawer.send_signal(signal.SIGKILL)
    drawer.wait(timeout=30)
    assert _stagings(transfer_lab_home), "the kill left no staging folder to clean"
    root = demo.demo_folder(16)
    assert (root / "COMPLETE").exists()
    assert _stagings(transfer_lab_home) == []


def test_only_stagings_of_dead_processes_or_old_ones_are_removed(transfer_lab_home):
    root = demo.folder_path(24)
    root.mkdir(parents=True)
    (root / "COMPLETE").write_text("demo v1\n")  # opened, not drawn
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    here = demo.staging_prefix(root)
    dead = here.replace(f".{os.getpid()}.", f".{ended.stdout.strip()}.")
    other_host = f"{root.name}.elsewhere.{os.getpid()}."
    folders = {
        "live": here + "a1",
        "dead": dead + "b2",
        "other host": other_host + "c3",
        "old other host": other_host + "d4",
        "old unnamed": f"{root.name}.e5x7k",
        "unnamed": f"{root.name}.f6",
    }
    for name in folders.values():
        (root.parent / name / "train").mkdir(parents=True)
    long_ago = time.time() - demo.STAGING_STALE_AFTER_S - 60
    for key in ("old other host", "old unnamed"):
        os.utime(root.parent / folders[key], (long_ago, long_ago))
    assert demo.demo_folder(24) == root
    assert _stagings(transfer_lab_home) == sorted(folders[k] for k in ("live", "other host", "unnamed"))
