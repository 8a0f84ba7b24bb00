import numpy as np

from core import demo


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
