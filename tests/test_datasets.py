"""Datasets made in the app: names, the store and its changes, zips in and out, ingest safety, faults and races.

Real files in a fresh data directory per test; images are tiny PIL drawings (32-64 px), each a distinct colour so
that its content (and digest) differs.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image

import faults
from core import datasets
from core.datasets import cli
from core.datasets.store import INCOMING, THUMBS, TRASH
from core.errors import DataHomeUnavailable, DatasetError


def picture(seed: int, fmt: str = "JPEG", size: tuple[int, int] = (40, 32)) -> bytes:
    """A small image whose content depends on ``seed`` (a different colour and a dot)."""
    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    image.putpixel((seed % size[0], (seed // size[0]) % size[1]), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def huge_png_header() -> bytes:
    """A PNG whose header claims 100,000 x 100,000 pixels (a decompression bomb); no pixel data follows."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def make_zip(entries: dict[str, bytes], symlinks: dict[str, str] | None = None, folders: tuple = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for folder in folders:
            archive.writestr(folder, b"")
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def digests_by_class(name: str) -> dict[str, set[tuple[str, bool]]]:
    found: dict[str, set[tuple[str, bool]]] = {}
    for image in datasets.images(name):
        found.setdefault(image.class_name, set()).add((image.digest, image.test))
    return found


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    "bad", ["../x", "a/b", "a\\b", ".hidden", "train", "Test", "IMAGES", "CON", "lpt1", "nul.txt", "", "   ", "x" * 61]
)
def test_bad_class_names_are_refused_with_a_sentence(bad):
    with pytest.raises(DatasetError, match=r"^The class name .*: use letters"):
        datasets.check_class_name(bad)


@pytest.mark.parametrize("bad", ["..", ".", "a/b", "x.", "tab\there", "x" * 61, "AUX", ""])
def test_bad_dataset_names_are_refused(bad):
    with pytest.raises(DatasetError, match="The dataset name"):
        datasets.check_dataset_name(bad)


def test_good_names_pass_stripped_and_folder_names_are_formatted():
    assert datasets.check_class_name("  golden retriever  ") == "golden retriever"
    assert datasets.check_class_name("Bichon (frisé), l'ami-1_2.x") == "Bichon (frisé), l'ami-1_2.x"
    assert datasets.check_class_name("柴犬") == "柴犬"
    assert datasets.check_dataset_name("train") == "train"  # only classes mean splits
    assert datasets.class_name_from_folder("n02085620-Chihuahua") == "Chihuahua"
    assert datasets.class_name_from_folder("golden_retriever") == "golden retriever"
    with pytest.raises(DatasetError):
        datasets.class_name_from_folder("test")


# ---------------------------------------------------------------- store basics


def test_create_add_and_summarise_with_warnings():
    made = datasets.create_dataset("pets", ["beagle", "samoyed"])
    assert made.class_names == ["beagle", "samoyed"] and made.total == 0
    assert datasets.exists("pets") and datasets.source_of("pets") == "local:pets"
    assert datasets.dataset_folder("pets").parent == datasets.datasets_root()
    report = datasets.add_images("pets", "beagle", [(f"b{i}.jpg", picture(i)) for i in range(12)])
    assert report.ok and len(report.added) == 12 and report.message() == "Added 12 images to 'beagle'."
    assert all(ref.startswith("beagle/") and ref.endswith(".jpg") for ref in report.added)
    datasets.add_images("pets", "samoyed", [(f"s{i}.png", picture(100 + i, "PNG")) for i in range(3)])

    summary = datasets.summary("pets")
    assert summary.counts == {"beagle": 12, "samoyed": 3} and summary.total == 15
    assert summary.test_counts == {"beagle": 0, "samoyed": 0} and summary.trash_count == 0
    few, unbalanced = summary.warnings
    assert "'samoyed' has 3" in few and "beagle" not in few
    assert "unbalanced" in unbalanced and "'beagle' has 12" in unbalanced
    assert [s.name for s in datasets.list_datasets()] == ["pets"]
    image = datasets.images("pets", "samoyed")[0]
    assert image.path.suffix == ".png" and image.path.read_bytes() in {picture(100 + i, "PNG") for i in range(3)}
    assert image.thumbnail_path.is_file() and max(Image.open(image.thumbnail_path).size) <= 96

    with pytest.raises(DatasetError, match="already exists"):
        datasets.create_dataset("PETS")
    with pytest.raises(DatasetError, match="same name"):
        datasets.create_dataset("other", ["pug", "Pug"])
    with pytest.raises(DatasetError, match="There is no dataset 'nope'.*Data page"):
        datasets.summary("nope")
    with pytest.raises(DatasetError, match="no class 'pug'"):
        datasets.add_images("pets", "pug", [("p.jpg", picture(1))])


def test_one_class_warning_and_thumbnail_remade_when_missing():
    datasets.create_dataset("solo", ["cat"])
    datasets.add_images("solo", "cat", [("c.jpg", picture(5, size=(64, 48)))])
    assert any("add a second class" in w for w in datasets.summary("solo").warnings)
    image = datasets.images("solo")[0]
    image.thumbnail_path.unlink()
    assert datasets.thumbnail(image) == image.thumbnail_path
    assert Image.open(image.thumbnail_path).size == (64, 48)


def test_duplicates_are_stored_once_and_reported_with_their_class():
    datasets.create_dataset("dups", ["a", "b"])
    same = picture(7)
    first = datasets.add_images("dups", "a", [("one.jpg", same), ("copy.jpg", same), ("other.jpg", picture(8))])
    assert len(first.added) == 2 and first.duplicates == [("copy.jpg", "a")]
    second = datasets.add_images("dups", "b", [("again.jpg", same)])
    assert second.added == [] and second.duplicates == [("again.jpg", "a")] and second.ok
    assert second.message() == "No image was added. 1 file was already in 'a'."
    assert datasets.summary("dups").counts == {"a": 2, "b": 0}


def test_hostile_uploads_are_rejected_with_sentences_and_good_files_still_added():
    datasets.create_dataset("safe", ["a"])
    good = picture(1)
    report = datasets.add_images(
        "safe",
        "a",
        [
            ("notes.txt", b"hello, this is plain text and not an image at all\n"),
            ("half.jpg", picture(2, size=(64, 64))[:200]),
            ("bomb.png", huge_png_header()),
            ("empty.jpg", b""),
            ("good.jpg", good),
        ],
    )
    reasons = dict(report.rejected)
    assert len(report.added) == 1 and not report.ok
    assert "not an image: it contains text" in reasons["notes.txt"]
    assert "truncated or corrupt" in reasons["half.jpg"]
    assert "too large" in reasons["bomb.png"] and "10,000 megapixels" in reasons["bomb.png"]
    assert "empty" in reasons["empty.jpg"]
    assert report.message().startswith("Added 1 image to 'a'. 4 files were not added: notes.txt, half.jpg, bomb.png")
    assert [i.path.read_bytes() for i in datasets.images("safe")] == [good]
    with pytest.raises(DatasetError):
        datasets.add_class("safe", "../x")
    with pytest.raises(DatasetError):
        datasets.images("safe", "../../etc")
    with pytest.raises(DatasetError, match="moved or removed"):
        datasets.image_at("safe", "../a/" + datasets.images("safe")[0].path.name)


# ---------------------------------------------------------------- zips


def test_zip_import_keeps_only_good_files_and_writes_nothing_outside(tmp_path, transfer_lab_home):
    datasets.create_dataset("z", [])
    before = all_files(tmp_path.parent)
    archive = make_zip(
        {
            "beagle/a.jpg": picture(1),
            "beagle/puppies/b.jpg": picture(2),  # nested: still the beagle class
            "beagle/broken.jpg": picture(3)[:100],
            "n02111889-Samoyed/c.png": picture(4, "PNG"),
            "../evil.jpg": picture(5),
            "/abs.jpg": picture(6),
            "loose.jpg": picture(7),  # not in a class folder
            "test/d.jpg": picture(8),  # a folder named test among class folders: not a valid class
            "__MACOSX/beagle/._a.jpg": b"junk",
            "beagle/.DS_Store": b"junk",
        },
        symlinks={"beagle/link.jpg": "/etc/passwd"},
    )
    report = datasets.import_zip("z", io.BytesIO(archive))
    reasons = dict(report.rejected)
    assert sorted(report.new_classes) == ["Samoyed", "beagle"] and len(report.added) == 3
    assert "climbs out" in reasons["../evil.jpg"] and "absolute path" in reasons["/abs.jpg"]
    assert "symbolic link" in reasons["beagle/link.jpg"] and "not inside a class folder" in reasons["loose.jpg"]
    assert "truncated or corrupt" in reasons["beagle/broken.jpg"] and "cannot be a class" in reasons["test/d.jpg"]
    assert set(reasons) == {
        "../evil.jpg",
        "/abs.jpg",
        "beagle/link.jpg",
        "loose.jpg",
        "beagle/broken.jpg",
        "test/d.jpg",
    }
    assert {i.class_name for i in datasets.images("z")} == {"beagle", "Samoyed"}
    folder = datasets.dataset_folder("z")
    new = all_files(tmp_path.parent) - before
    assert new and all(folder in p.parents for p in new), sorted(new - {p for p in new if folder in p.parents})
    assert not any(p.name in ("evil.jpg", "abs.jpg", "passwd") for p in new)
    assert not list((folder / INCOMING).iterdir())


@pytest.mark.parametrize(
    "layout, tests",
    [
        ({"train/beagle/a.jpg": 1, "train/pug/b.jpg": 2, "TEST/beagle/c.jpg": 3, "test/pug/d.jpg": 4}, 2),
        ({"Images/n02088364-beagle/a.jpg": 1, "Images/n02110958-pug/b.jpg": 2}, 0),
        ({"mydogs/beagle/a.jpg": 1, "mydogs/pug/sub/b.jpg": 2, "mydogs/README.txt": 0}, 0),
        ({"dogs/train/beagle/a.jpg": 1, "dogs/test/pug/b.jpg": 2, "dogs/train/pug/c.jpg": 3}, 1),
    ],
)
def test_zip_layouts(layout, tests):
    datasets.create_dataset("lay")
    entries = {name: picture(seed) if seed else b"read me" for name, seed in layout.items()}
    report = datasets.import_zip("lay", io.BytesIO(make_zip(entries)))
    summary = datasets.summary("lay")
    assert summary.class_names == ["beagle", "pug"]
    assert summary.total == sum(1 for seed in layout.values() if seed)
    assert sum(summary.test_counts.values()) == tests
    assert [name for name, _ in report.rejected] == [name for name, seed in layout.items() if not seed]


def test_zips_refused_whole(tmp_path):
    datasets.create_dataset("w", ["a"])
    small = datasets.ZipLimits(max_files=3)
    cases = [
        (make_zip({}), datasets.ZipLimits(), "is empty"),
        (make_zip({}, folders=("a/",)), datasets.ZipLimits(), "is empty"),
        (make_zip({f"a/{i}.jpg": picture(i) for i in range(4)}), small, "more than the 3"),
        (make_zip({"a/x.jpg": picture(1), "a/y.jpg": picture(2)}), datasets.ZipLimits(max_total_bytes=500), "bomb"),
        (b"PK\x03\x04 not really a zip", datasets.ZipLimits(), "not a zip file"),
    ]
    for data, limits, message in cases:
        path = tmp_path / "upload.zip"
        path.write_bytes(data)
        with pytest.raises(DatasetError, match=message) as raised:
            datasets.import_zip("w", path, limits=limits)
        assert "upload.zip" in str(raised.value)
    assert datasets.summary("w").total == 0


def test_zip_member_lying_about_its_size_is_rejected():
    data = bytearray(make_zip({"a/x.bmp": picture(1, "BMP"), "a/y.jpg": picture(2)}))
    # The central directory and the local header of x.bmp claim 10 bytes fewer than the member holds.
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("a/x.bmp")
    for offset in (info.header_offset + 22, data.find(b"PK\x01\x02") + 24):
        assert struct.unpack("<I", data[offset : offset + 4])[0] == info.file_size
        data[offset : offset + 4] = struct.pack("<I", info.file_size - 10)
    with datasets.zip_members(io.BytesIO(bytes(data))) as contents:
        with pytest.raises(DatasetError, match="damaged"):
            contents.read("a/x.bmp")
    datasets.create_dataset("liar")
    report = datasets.import_zip("liar", io.BytesIO(bytes(data)))
    assert len(report.added) == 1 and [name for name, _ in report.rejected] == ["a/x.bmp"]


def test_import_into_existing_classes_only():
    datasets.create_dataset("only", ["Beagle"])
    archive = make_zip({"beagle/a.jpg": picture(1), "pug/b.jpg": picture(2)})
    report = datasets.import_zip("only", io.BytesIO(archive), create_classes=False)
    assert report.added == [report.added[0]] and report.added[0].startswith("Beagle/")
    assert "no class 'pug'" in dict(report.rejected)["pug/b.jpg"] and report.new_classes == []


def test_dataset_zip_round_trip():
    datasets.create_dataset("orig", ["beagle", "pug", "empty one"])
    datasets.add_images("orig", "beagle", [(f"{i}.jpg", picture(i)) for i in range(3)])
    datasets.import_zip(
        "orig", io.BytesIO(make_zip({"test/pug/t.png": picture(9, "PNG"), "train/pug/u.jpg": picture(10)}))
    )
    assert sum(datasets.summary("orig").test_counts.values()) == 1
    archive = datasets.dataset_zip("orig")
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in opened.infolist())
        assert all(n.startswith(("orig/train/", "orig/test/")) for n in opened.namelist())
    datasets.create_dataset("copy")
    report = datasets.import_zip("copy", io.BytesIO(archive))
    assert report.ok and sorted(report.new_classes) == ["beagle", "empty one", "pug"]
    assert datasets.summary("copy").class_names == datasets.summary("orig").class_names
    assert digests_by_class("copy") == digests_by_class("orig")


# ---------------------------------------------------------------- changes


def test_move_remove_trash_restore_and_empty():
    datasets.create_dataset("m", ["a", "b"])
    refs = datasets.add_images("m", "a", [(f"{i}.jpg", picture(i)) for i in range(3)]).added
    moved = datasets.move_image("m", refs[0], "b")
    assert moved.class_name == "b" and moved.ref == f"b/{Path(refs[0]).name}"
    assert datasets.move_image("m", moved.ref, "b") == moved
    with pytest.raises(DatasetError, match="moved or removed"):
        datasets.image_at("m", refs[0])
    with pytest.raises(DatasetError, match="no class 'c'"):
        datasets.move_image("m", moved.ref, "c")

    first = datasets.remove_image("m", refs[1])
    second = datasets.remove_image("m", moved.ref)
    assert [t.entry for t in datasets.trash("m")] == [second.entry, first.entry]
    assert datasets.summary("m").trash_count == 2 and datasets.summary("m").counts == {"a": 1, "b": 0}
    datasets.delete_class("m", "b")
    back = datasets.restore("m", second.entry)  # its class was deleted: recreated
    assert back.class_name == "b" and datasets.find_image("m", back.digest) == back
    datasets.add_images("m", "a", [("again.jpg", first.path.read_bytes())])
    kept = datasets.restore("m", first.entry)  # the same content is back meanwhile: the trash copy is dropped
    assert kept.class_name == "a" and datasets.trash("m") == []
    with pytest.raises(DatasetError, match="not in the trash"):
        datasets.restore("m", first.entry)

    datasets.remove_image("m", refs[2])
    datasets.empty_trash("m")
    folder = datasets.dataset_folder("m")
    assert datasets.trash("m") == [] and datasets.find_image("m", Path(refs[2]).name[:16]) is None
    assert not (folder / THUMBS / f"{Path(refs[2]).name[:16]}.jpg").exists()
    assert (folder / THUMBS / f"{back.digest}.jpg").exists()


def test_rename_class_keeps_test_marks_and_delete_class_and_dataset():
    datasets.create_dataset("r", ["dog", "cat"])
    datasets.import_zip("r", io.BytesIO(make_zip({"train/dog/a.jpg": picture(1), "test/dog/b.jpg": picture(2)})))
    trashed = datasets.remove_image("r", next(i.ref for i in datasets.images("r") if not i.test))
    with pytest.raises(DatasetError, match="already has a class 'cat'"):
        datasets.rename_class("r", "dog", "CAT")
    datasets.rename_class("r", "dog", "Dog")  # only the case changes: allowed
    datasets.rename_class("r", "Dog", "hound")
    assert datasets.summary("r").test_counts == {"cat": 0, "hound": 1}
    assert [t.class_name for t in datasets.trash("r")] == ["hound"] and trashed.test is False
    datasets.delete_class("r", "hound")
    assert datasets.summary("r").class_names == ["cat"]
    datasets.delete_dataset("r")
    assert not datasets.exists("r") and datasets.list_datasets() == []
    assert not [p for p in datasets.datasets_root().iterdir()]


# ---------------------------------------------------------------- faults and races


def test_disk_full_during_an_ingest_changes_nothing(transfer_lab_home, monkeypatch):
    datasets.create_dataset("full", ["a"])
    datasets.add_images("full", "a", [("keep.jpg", picture(99))])
    before = digests_by_class("full")
    faults.DiskFull(transfer_lab_home, budget=3000).install(monkeypatch)
    with pytest.raises(DataHomeUnavailable, match="disk is full.*nothing was added"):
        datasets.add_images("full", "a", [(f"{i}.jpg", picture(i, size=(64, 64))) for i in range(8)])
    assert not list((datasets.dataset_folder("full") / INCOMING).iterdir())  # before a read could recover it
    assert digests_by_class("full") == before


KILL_DURING_STAGING = """
import builtins, os, signal
from core import datasets
real, opened = builtins.open, [0]
def open_then_die(file, mode="r", *args, **kwargs):
    if ".incoming" in str(file) and "w" in mode:
        opened[0] += 1
        if opened[0] == 5:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(file, mode, *args, **kwargs)
builtins.open = open_then_die
"""

KILL_AFTER_COMMITTED = "import faults\nfaults.kill_after_replacing('.committed', 1)\n"

KILL_WHILE_PLACING = """
import os, signal
real, placed = os.replace, [0]
def replace_then_die(source, target, *args, **kwargs):
    real(source, target, *args, **kwargs)
    if str(target).endswith(".png"):
        placed[0] += 1
        if placed[0] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace_then_die
"""

UPLOAD = """
import io
from PIL import Image
from core import datasets
def picture(seed):
    buffer = io.BytesIO()
    Image.new("RGB", (40, 32), (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)).save(buffer, "PNG")
    return buffer.getvalue()
datasets.add_images("k", "a", [(f"{i}.png", picture(i)) for i in range(10, 16)])
print("survived")
"""


@pytest.mark.parametrize(
    "hook, whole", [(KILL_DURING_STAGING, False), (KILL_AFTER_COMMITTED, True), (KILL_WHILE_PLACING, True)]
)
def test_kill_9_leaves_the_dataset_as_it_was_or_with_the_whole_upload(transfer_lab_home, hook, whole):
    datasets.create_dataset("k", ["a"])
    datasets.add_images("k", "a", [("old.jpg", picture(1))])
    result = faults.run_python(hook + UPLOAD, transfer_lab_home, timeout=60)
    assert result.returncode == -9 and "survived" not in result.stdout, result.stderr[-2000:]
    incoming = datasets.dataset_folder("k") / INCOMING
    assert list(incoming.iterdir()), "the kill should leave a staging folder behind"
    datasets.recover("k")
    assert not list(incoming.iterdir())
    counts = datasets.summary("k").counts
    assert counts == {"a": 7 if whole else 1}
    if whole:
        assert all(image.thumbnail_path.is_file() for image in datasets.images("k"))


def test_recovery_leaves_a_live_ingest_alone(monkeypatch):
    datasets.create_dataset("live", ["a"])
    seen = []

    def progress(done, total, message):
        if done == 2:  # mid-ingest: another tab reads the summary (which recovers) and recovers explicitly
            datasets.recover("live")
            seen.append(datasets.summary("live").total)

    report = datasets.add_images("live", "a", [(f"{i}.jpg", picture(i)) for i in range(6)], progress=progress)
    assert len(report.added) == 6 and seen == [0] and datasets.summary("live").total == 6


def test_two_tabs_adding_at_once_lose_nothing():
    datasets.create_dataset("race", ["a", "b"])
    shared = picture(500)
    start = threading.Barrier(2)
    reports = {}

    def add(class_name: str, offset: int) -> None:
        files = [(f"{i}.jpg", picture(offset + i)) for i in range(15)] + [("shared.jpg", shared)]
        start.wait()
        reports[class_name] = datasets.add_images("race", class_name, files)

    threads = [threading.Thread(target=add, args=(c, o)) for c, o in (("a", 0), ("b", 100))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    counts = datasets.summary("race").counts
    assert counts["a"] + counts["b"] == 31 and min(counts.values()) >= 15  # the shared picture stored once
    assert sum(len(r.duplicates) for r in reports.values()) == 1
    assert not list((datasets.dataset_folder("race") / INCOMING).iterdir())


# ---------------------------------------------------------------- command line


def test_cli_import_list_export(tmp_path, capsys):
    source = tmp_path / "in.zip"
    source.write_bytes(make_zip({"beagle/a.jpg": picture(1), "pug/b.jpg": picture(2), "pug/c.txt": b"no"}))
    assert cli.main(["import", "new", str(source)]) == 0
    out = capsys.readouterr()
    assert "Added 2 images to 2 classes" in out.out and "pug/c.txt" in out.out and "[3/3]" in out.err
    assert cli.main(["list"]) == 0
    assert "local:new: 2 images; beagle (1), pug (1)" in capsys.readouterr().out
    target = tmp_path / "out.zip"
    assert cli.main(["export", "new", str(target)]) == 0
    assert len(zipfile.ZipFile(target).namelist()) == 2
    with pytest.raises(SystemExit) as exited:
        cli.main(["export", "missing", str(target)])
    assert exited.value.code == 1 and "There is no dataset 'missing'" in capsys.readouterr().err


def test_no_staging_or_trash_folder_is_a_class():
    datasets.create_dataset("dots", ["a"])
    folder = datasets.dataset_folder("dots")
    for hidden in (TRASH, INCOMING, THUMBS, ".whatever"):
        (folder / hidden).mkdir(exist_ok=True)
    (folder / "a" / "notes.txt").write_text("not an image")
    assert datasets.summary("dots").class_names == ["a"] and datasets.images("dots") == []
    os.rmdir(folder / ".whatever")
