"""Datasets made in the app, stored as plain folders: every change is one rename under one lock.

``datasets_root() / <dataset> /`` holds ``<class>/<sha16>[.test].<ext>`` (the uploaded bytes, unchanged; the
class folder is the class name), ``.thumbs/<sha16>.jpg``, ``.trash/<class>/<file>``, ``.incoming/<uuid>/`` (an
ingest being staged, see ``recover``), ``.lock`` and, in a class, ``.owner`` (who made it). Moving one file is
one ``os.rename``, so a crash at any moment leaves every image in exactly one
place and no manifest can disagree with the folders.

Every change holds ``flock(LOCK_EX)`` on ``.lock`` (two browser tabs serialise) and first finishes or undoes an
interrupted ingest. Failed writes become ``data_home.cannot_write``'s ``DataHomeUnavailable``.

One module on purpose (about 580 lines): the layout, the lock, the recovery and every change share one
consistency argument (one rename per change, under the lock, after recovery), which split files would scatter.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from core import data_home
from core.datasets.names import check_class_name, check_dataset_name
from core.errors import DataHomeUnavailable, DatasetError
from core.images import read_image_file

MIN_IMAGES_ADVISED = 10
"""Fewer images than this in a class and the model has too little to learn it from (a warning, not a refusal)."""

UNBALANCED_RATIO = 3
"""Warn when the largest class has more than this many times the images of the smallest non-empty one; the same
ratio as the folder source's warning (``core.data.info``, which imports this package, so it is not imported)."""

THUMBNAIL_SIZE = 96
NAMED_IN_WARNINGS = 5

LOCK = ".lock"
THUMBS = ".thumbs"
TRASH = ".trash"
INCOMING = ".incoming"
OWNER = ".owner"  # in a class: the name of the learner who made the dataset
COMMITTED = ".committed"
"""Written in a staging folder once it holds the whole upload: from then on recovery finishes the ingest."""
STAGING_LOCK = ".staging"
"""Held (flock) by the process staging an ingest, so recovery leaves a live one alone."""

STAGING_GRACE_S = 60
"""A staging folder without its lock file is abandoned once it is this old (before that it may be starting)."""

IMAGE_FILE = re.compile(r"^([0-9a-f]{16})(\.test)?\.(jpg|png|webp|bmp|gif|tif)$")


@dataclass(frozen=True)
class StoredImage:
    """One image of a dataset; ``ref`` ("<class>/<file name>") is what every change takes."""

    ref: str
    class_name: str
    path: Path
    digest: str
    test: bool

    @property
    def thumbnail_path(self) -> Path:
        """Where its thumbnail is (it may be missing: ``thumbnail`` makes it)."""
        return self.path.parent.parent / THUMBS / f"{self.digest}.jpg"


@dataclass(frozen=True)
class TrashedImage:
    """A removed image, restorable to its class; ``entry`` ("<class>/<file name>") names it inside the trash."""

    entry: str
    class_name: str
    path: Path
    test: bool
    removed_at: float

    @property
    def digest(self) -> str:
        return self.path.name[:16]

    @property
    def thumbnail_path(self) -> Path:
        """Its thumbnail, kept while it is in the trash (it may be missing: show the image itself then)."""
        return self.path.parent.parent.parent / THUMBS / f"{self.digest}.jpg"


@dataclass(frozen=True)
class DatasetSummary:
    """What a page shows about a dataset: its classes, their sizes and what to fix before training."""

    name: str
    class_names: list[str]
    counts: dict[str, int]
    test_counts: dict[str, int]
    trash_count: int
    owner: str | None = None  # the learner who made it, in a class

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def warnings(self) -> list[str]:
        found = []
        if len(self.class_names) < 2:
            have = "no class yet" if not self.class_names else f"only one class, '{self.class_names[0]}'"
            found.append(f"'{self.name}' has {have}: add a second class, so the model has something to tell apart.")
        few = [(name, self.counts[name]) for name in self.class_names if self.counts[name] < MIN_IMAGES_ADVISED]
        if few:
            named = ", ".join(f"'{name}' has {count}" for name, count in few[:NAMED_IN_WARNINGS])
            more = f" and {len(few) - NAMED_IN_WARNINGS} more" if len(few) > NAMED_IN_WARNINGS else ""
            found.append(
                f"Some classes have fewer than {MIN_IMAGES_ADVISED} images ({named}{more}): add more photos "
                "to them, or the model will barely learn them."
            )
        present = [(count, name) for name, count in self.counts.items() if count]
        if len(present) > 1:
            (least, small), (most, big) = min(present), max(present)
            if most > UNBALANCED_RATIO * least:
                found.append(
                    f"The classes are unbalanced: '{big}' has {most} images and '{small}' only {least}, so the "
                    "model will favour the big classes; add images to the small ones if you can."
                )
        return found


# ---------------------------------------------------------------- where things are


def datasets_root() -> Path:
    """The folder holding one folder per dataset (not created here: reading a read-only data directory works).

    ``datasets/local/`` rather than ``datasets/`` itself, which also holds the demo sets and TFDS data."""
    return data_home.home_path() / "datasets" / "local"


def dataset_folder(name: str) -> Path:
    """The folder of a dataset (checked name: it cannot point outside the root), whether or not it exists."""
    return datasets_root() / check_dataset_name(name)


def exists(name: str) -> bool:
    try:
        return dataset_folder(name).is_dir()
    except DatasetError:
        return False


def source_of(name: str) -> str:
    """The data source string that reads this dataset."""
    return "local:" + name


def existing_folder(name: str) -> Path:
    """The dataset's folder, or the sentence saying there is no such dataset."""
    folder = dataset_folder(name)
    if not folder.is_dir():
        raise DatasetError(f"There is no dataset '{name}': create it on the Data page, or pick another dataset.")
    return folder


def _visible(folder: Path) -> list[Path]:
    """Sub-folders that are classes (dot-folders never are), sorted by name."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    return sorted((Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")), key=lambda p: p.name)


def _image_files(folder: Path) -> list[tuple[str, re.Match[str]]]:
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted((name, match) for name in names if (match := IMAGE_FILE.match(name)))


def _stored(folder: Path, class_name: str, file_name: str) -> StoredImage:
    match = IMAGE_FILE.match(file_name)
    assert match is not None
    return StoredImage(
        ref=f"{class_name}/{file_name}",
        class_name=class_name,
        path=folder / class_name / file_name,
        digest=match.group(1),
        test=bool(match.group(2)),
    )


def _class_named(folder: Path, class_name: str) -> str | None:
    """The existing class whose name equals ``class_name`` ignoring case (exact match first), or None."""
    classes = [p.name for p in _visible(folder)]
    if class_name in classes:
        return class_name
    return next((c for c in classes if c.casefold() == class_name.casefold()), None)


def class_names_in(folder: Path) -> list[str]:
    """The classes of a dataset's folder (its visible sub-folders), sorted."""
    return [p.name for p in _visible(folder)]


def require_class(folder: Path, name: str, class_name: str) -> str:
    """``class_name`` if the dataset has that class, else the sentence saying it has not."""
    if class_name not in class_names_in(folder):
        raise DatasetError(f"The dataset '{name}' has no class '{class_name}': add it first, or pick another class.")
    return class_name


def content_digest(data: bytes) -> str:
    """What names an image in a dataset: the first 16 hex digits of its bytes' SHA-256 (the same photo uploaded
    twice is stored once; a page finds a photo it was handed)."""
    return hashlib.sha256(data).hexdigest()[:16]


def digests(folder: Path) -> dict[str, str]:
    """Digest -> class of every image in a dataset folder: what duplicate checks compare against."""
    return {m.group(1): cls.name for cls in _visible(folder) for _, m in _image_files(cls)}


# ---------------------------------------------------------------- locking, writing, recovery


@contextlib.contextmanager
def _writing(path: Path, then: str = "try again") -> Iterator[None]:
    """Turn a failed write (disk full, read-only...) into the data directory's one-sentence error."""
    try:
        yield
    except DataHomeUnavailable:
        raise
    except OSError as error:
        raise data_home.cannot_write(path, error, then=then) from error


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[Path]:
    """Hold the dataset's lock (blocking), after finishing or undoing any interrupted ingest."""
    with _writing(folder):
        descriptor = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        _recover_locked(folder)
        yield folder
    finally:
        os.close(descriptor)  # releases the lock


def recover(name: str) -> None:
    """Finish every interrupted ingest that was complete (marked committed), delete every other one.

    A staging folder whose process is still alive (it holds its flock) is left alone."""
    with locked(existing_folder(name)):
        pass


def _recover_locked(folder: Path) -> None:
    incoming = folder / INCOMING
    if not incoming.is_dir():
        return
    for staging in sorted(incoming.iterdir()):
        if not staging.is_dir():
            continue
        with _staging_abandoned(staging) as abandoned:
            if not abandoned:
                continue
            if (staging / COMMITTED).is_file():
                place_staged(folder, staging)
            with _writing(staging):
                shutil.rmtree(staging)


@contextlib.contextmanager
def _staging_abandoned(staging: Path) -> Iterator[bool]:
    """Whether no live process holds the staging folder's lock (held for the test, so none takes it meanwhile)."""
    try:
        descriptor = os.open(staging / STAGING_LOCK, os.O_RDONLY)
    except FileNotFoundError:  # killed before it took its lock, or about to take it
        yield time.time() - staging.stat().st_mtime > STAGING_GRACE_S
        return
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)


def place_staged(folder: Path, staging: Path) -> list[StoredImage]:
    """Move a committed staging folder's files into place (idempotent: what is already there is skipped).

    Call with the dataset's lock held. A staged class matching an existing one ignoring case goes into it."""
    placed = []
    with _writing(folder):
        thumbs = staging / THUMBS
        if thumbs.is_dir():
            (folder / THUMBS).mkdir(exist_ok=True)
            for thumb in sorted(thumbs.iterdir()):
                os.replace(thumb, folder / THUMBS / thumb.name)
        for staged_class in _visible(staging):
            class_name = _class_named(folder, staged_class.name) or staged_class.name
            (folder / class_name).mkdir(exist_ok=True)
            for file_name, _ in _image_files(staged_class):
                os.replace(staged_class / file_name, folder / class_name / file_name)
                placed.append(_stored(folder, class_name, file_name))
    return placed


def _remove_tree(path: Path) -> None:
    """Remove a folder for good: renamed to a dot-name first, so a crash never leaves half of it visible."""
    doomed = path.parent / f".deleting-{uuid.uuid4().hex}"
    with _writing(path):
        os.rename(path, doomed)
        shutil.rmtree(doomed)


def _recover_if_cheap(folder: Path) -> None:
    """Finish interrupted ingests before reading, when there are any and the data directory can be written."""
    incoming = folder / INCOMING
    if incoming.is_dir() and any(incoming.iterdir()):
        with contextlib.suppress(DataHomeUnavailable, OSError):
            with locked(folder):
                pass


# ---------------------------------------------------------------- reading


def images(name: str, class_name: str | None = None) -> list[StoredImage]:
    """The images of a dataset (or of one class), sorted by class then file name."""
    folder = existing_folder(name)
    _recover_if_cheap(folder)
    classes = [p.name for p in _visible(folder)]
    if class_name is not None:
        classes = [require_class(folder, name, class_name)]
    return [_stored(folder, c, file_name) for c in classes for file_name, _ in _image_files(folder / c)]


def find_image(name: str, digest: str) -> StoredImage | None:
    """The image with this content (the 16 hex chars of its SHA-256), if the dataset holds it."""
    return next((image for image in images(name) if image.digest == digest), None)


def image_at(name: str, ref: str) -> StoredImage:
    """The image ``ref`` names, or ``DatasetError`` if it is no longer there."""
    folder = existing_folder(name)
    class_name, _, file_name = ref.partition("/")
    if (
        class_name in [p.name for p in _visible(folder)]
        and IMAGE_FILE.match(file_name)
        and (folder / class_name / file_name).is_file()
    ):
        return _stored(folder, class_name, file_name)
    raise DatasetError(
        f"The image {ref!r} is no longer in '{name}': it was moved or removed, perhaps in another tab. "
        "Reload the page to see the dataset as it is."
    )


def summary(name: str) -> DatasetSummary:
    folder = existing_folder(name)
    _recover_if_cheap(folder)
    counts, test_counts = {}, {}
    for class_folder in _visible(folder):
        files = _image_files(class_folder)
        counts[class_folder.name] = len(files)
        test_counts[class_folder.name] = sum(1 for _, m in files if m.group(2))
    trash_count = sum(len(_image_files(c)) for c in _visible(folder / TRASH))
    return DatasetSummary(name, sorted(counts), counts, test_counts, trash_count, _owner_of(folder))


def _owner_of(folder: Path) -> str | None:
    try:
        return (folder / OWNER).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def list_datasets(owner: str | None = None) -> list[DatasetSummary]:
    """Every dataset (or one learner's, names compared without case), sorted by name."""
    found = [summary(p.name) for p in _visible(datasets_root())]
    if owner is None:
        return found
    return [s for s in found if s.owner is not None and s.owner.casefold() == owner.casefold()]


# ---------------------------------------------------------------- datasets and classes


def _check_new_classes(class_names: Sequence[str]) -> list[str]:
    checked = [check_class_name(c) for c in class_names]
    seen: dict[str, str] = {}
    for c in checked:
        if c.casefold() in seen:
            raise DatasetError(f"The classes '{seen[c.casefold()]}' and '{c}' are the same name: give each its own.")
        seen[c.casefold()] = c
    return checked


def create_dataset(name: str, class_names: Sequence[str] = (), owner: str | None = None) -> DatasetSummary:
    """A new, empty dataset with these classes (``owner``'s, in a class); built in a hidden folder, then renamed
    into place."""
    name = check_dataset_name(name)
    classes = _check_new_classes(class_names)
    root = datasets_root()
    taken = next((p.name for p in _visible(root) if p.name.casefold() == name.casefold()), None)
    if taken is not None:
        raise DatasetError(f"A dataset called '{taken}' already exists: pick another name, or open that one.")
    with _writing(root):
        root.mkdir(parents=True, exist_ok=True)
        building = root / f".creating-{uuid.uuid4().hex}"
        building.mkdir()
        for c in classes:
            (building / c).mkdir()
        if owner:
            (building / OWNER).write_text(owner, encoding="utf-8")
        try:
            os.rename(building, root / name)
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
            if (root / name).exists():
                raise DatasetError(f"A dataset called '{name}' already exists: pick another name.") from None
            raise
    return summary(name)


def delete_dataset(name: str) -> None:
    """Delete a dataset and everything in it, for good."""
    folder = existing_folder(name)
    with locked(folder):
        _remove_tree(folder)


def add_class(name: str, class_name: str) -> None:
    folder = existing_folder(name)
    class_name = check_class_name(class_name)
    with locked(folder):
        taken = _class_named(folder, class_name)
        if taken is not None:
            raise DatasetError(f"'{name}' already has a class '{taken}': pick another name.")
        with _writing(folder):
            (folder / class_name).mkdir()


def rename_class(name: str, old: str, new: str) -> None:
    """Rename a class (its images, test marks and trashed images go with it); a change of case is allowed."""
    folder = existing_folder(name)
    new = check_class_name(new)
    with locked(folder):
        require_class(folder, name, old)
        taken = _class_named(folder, new)
        if taken is not None and taken.casefold() != old.casefold():
            raise DatasetError(f"'{name}' already has a class '{taken}': pick another name, or move the images there.")
        if new == old:
            return
        with _writing(folder):
            os.rename(folder / old, folder / new)
            trashed = folder / TRASH / old
            if trashed.is_dir() and not (folder / TRASH / new).exists():
                os.rename(trashed, folder / TRASH / new)


def delete_class(name: str, class_name: str) -> None:
    """Delete a class and its images, for good (its trashed images stay restorable)."""
    folder = existing_folder(name)
    with locked(folder):
        require_class(folder, name, class_name)
        doomed = [m.group(1) for _, m in _image_files(folder / class_name)]
        _remove_tree(folder / class_name)
        _drop_thumbnails(folder, doomed)


def _drop_thumbnails(folder: Path, doomed: list[str]) -> None:
    """Remove the thumbnails of images no longer anywhere in the dataset or its trash."""
    kept = set(digests(folder)) | {m.group(1) for c in _visible(folder / TRASH) for _, m in _image_files(c)}
    for digest in set(doomed) - kept:
        with contextlib.suppress(FileNotFoundError), _writing(folder):
            (folder / THUMBS / f"{digest}.jpg").unlink()


# ---------------------------------------------------------------- images and the trash


def move_image(name: str, ref: str, new_class: str) -> StoredImage:
    """Relabel an image: move it to another existing class (its test mark goes with it)."""
    folder = existing_folder(name)
    with locked(folder):
        image = image_at(name, ref)
        require_class(folder, name, new_class)
        if new_class == image.class_name:
            return image
        with _writing(folder):
            os.rename(image.path, folder / new_class / image.path.name)
        return _stored(folder, new_class, image.path.name)


def remove_image(name: str, ref: str) -> TrashedImage:
    """Move an image to the trash, from where ``restore`` brings it back."""
    folder = existing_folder(name)
    with locked(folder):
        image = image_at(name, ref)
        target = folder / TRASH / image.class_name / image.path.name
        with _writing(folder):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(image.path, target)
        return _trashed(target)


def _trashed(path: Path) -> TrashedImage:
    return TrashedImage(
        entry=f"{path.parent.name}/{path.name}",
        class_name=path.parent.name,
        path=path,
        test=".test." in path.name,
        removed_at=path.stat().st_ctime,
    )


def trash(name: str) -> list[TrashedImage]:
    """The trashed images, newest first."""
    folder = existing_folder(name)
    found = [_trashed(c / file_name) for c in _visible(folder / TRASH) for file_name, _ in _image_files(c)]
    return sorted(found, key=lambda t: (t.removed_at, t.entry), reverse=True)


def restore(name: str, entry: str) -> StoredImage:
    """Put a trashed image back in its class (recreated if it was deleted); if the dataset holds the same
    content again meanwhile, the trash copy is just dropped and the image already there is returned."""
    folder = existing_folder(name)
    with locked(folder):
        class_name, _, file_name = entry.partition("/")
        source = folder / TRASH / class_name / file_name
        match = IMAGE_FILE.match(file_name)
        if class_name.startswith(".") or "/" in file_name or not match or not source.is_file():
            raise DatasetError(
                f"{entry!r} is not in the trash of '{name}': it was restored or the trash emptied, perhaps in "
                "another tab. Reload the page."
            )
        already = digests(folder).get(match.group(1))
        with _writing(folder):
            if already is not None:
                source.unlink()
                same = next(f for f, m in _image_files(folder / already) if m.group(1) == match.group(1))
                return _stored(folder, already, same)
            (folder / class_name).mkdir(exist_ok=True)
            os.rename(source, folder / class_name / file_name)
        return _stored(folder, class_name, file_name)


def empty_trash(name: str) -> None:
    """Delete the trashed images for good."""
    folder = existing_folder(name)
    with locked(folder):
        if not (folder / TRASH).is_dir():
            return
        doomed = [m.group(1) for c in _visible(folder / TRASH) for _, m in _image_files(c)]
        _remove_tree(folder / TRASH)
        _drop_thumbnails(folder, doomed)


# ---------------------------------------------------------------- thumbnails


def make_thumbnail(image: Image.Image) -> bytes:
    """A small JPEG of a decoded image (``THUMBNAIL_SIZE`` px on the long side); shrinks ``image`` in place."""
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def thumbnail(image: StoredImage) -> Path:
    """The image's thumbnail file, made (and written atomically) if it is missing."""
    path = image.thumbnail_path
    if path.is_file():
        return path
    data = make_thumbnail(read_image_file(image.path))
    partial = path.parent / f".{path.name}.{uuid.uuid4().hex}.partial"
    with _writing(path.parent):
        path.parent.mkdir(exist_ok=True)
        try:
            with open(partial, "wb") as handle:
                handle.write(data)
            os.replace(partial, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
    return path
