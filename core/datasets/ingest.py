"""Adding images to a dataset: uploads, camera snapshots and zips, all or nothing per call.

Each file is checked (``decode_image``: not an image, broken or too large is rejected with its sentence),
hashed (SHA-256; the same content is stored once per dataset) and thumbnailed by a thread pool (Pillow
releases the GIL while decoding), in input order. The accepted files are written to ``.incoming/<uuid>/``
under their final paths; then, under the dataset's lock, duplicates are checked again, a committed marker is
written and each file is renamed into place. A kill before the marker leaves the dataset as it was, one after
it leaves the whole upload (``store.recover`` finishes it); a failed write removes the staging folder.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from core import data_home
from core.datasets.archives import DEFAULT_ZIP_LIMITS, ZipLimits, zip_members
from core.datasets.names import class_name_from_folder
from core.datasets.store import (
    COMMITTED,
    INCOMING,
    STAGING_LOCK,
    THUMBS,
    class_names_in,
    content_digest,
    dataset_folder,
    digests,
    existing_folder,
    locked,
    make_thumbnail,
    place_staged,
    require_class,
)
from core.errors import DatasetError, ImageUnreadable
from core.images import claimed_format, decode_image
from core.progress import Progress

NAMED_IN_MESSAGE = 3
WORKERS = max(2, min(8, os.cpu_count() or 1))
IN_FLIGHT_PER_WORKER = 4
"""Files checked ahead of the one being written, per worker: enough to keep them busy, little memory."""

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "WebP": "webp"}
"""The format the leading bytes announce -> the stored file's extension; the bytes are kept as they came."""


@dataclass(frozen=True)
class IngestReport:
    """What an upload did: refs added (input order), duplicates (file, class holding it), rejections (file, why)."""

    added: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    new_classes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing was rejected (duplicates are fine: the dataset has them)."""
        return not self.rejected

    def message(self) -> str:
        """One or two sentences: "Added 12 images to 'beagle'. 2 files were not added: a.txt, b.jpg; 1 was
        already in 'samoyed'." The reasons are in ``rejected``."""
        by_class = Counter(ref.partition("/")[0] for ref in self.added)
        if not by_class:
            first = "No image was added."
        elif len(by_class) == 1:
            ((class_name, count),) = by_class.items()
            first = f"Added {_count(count, 'image')} to '{class_name}'."
        else:
            shown = ", ".join(f"{n} to '{c}'" for c, n in sorted(by_class.items())[:NAMED_IN_MESSAGE])
            more = f" and {len(by_class) - NAMED_IN_MESSAGE} more" if len(by_class) > NAMED_IN_MESSAGE else ""
            first = f"Added {_count(len(self.added), 'image')} to {len(by_class)} classes ({shown}{more})."
        rest = []
        if self.rejected:
            names = ", ".join(label for label, _ in self.rejected[:NAMED_IN_MESSAGE])
            more = f" and {len(self.rejected) - NAMED_IN_MESSAGE} more" if len(self.rejected) > NAMED_IN_MESSAGE else ""
            verb = "was" if len(self.rejected) == 1 else "were"
            rest.append(f"{_count(len(self.rejected), 'file')} {verb} not added: {names}{more}")
        if self.duplicates:
            held = ", ".join(f"'{c}'" for c in sorted({c for _, c in self.duplicates}))
            n = len(self.duplicates)
            subject = str(n) if rest else _count(n, "file")
            rest.append(f"{subject} {'was' if n == 1 else 'were'} already in {held}")
        return first + (" " + "; ".join(rest) + "." if rest else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class _Candidate:
    label: str  # the file name or zip member, for messages
    class_name: str
    test: bool
    load: Callable[[], bytes]


@dataclass(frozen=True)
class _Checked:
    digest: str
    extension: str
    data: bytes
    thumbnail: bytes

    def file_name(self, test: bool) -> str:
        return f"{self.digest}{'.test' if test else ''}.{self.extension}"


def _extension(data: bytes) -> str:
    return EXTENSIONS[claimed_format(data)]


def _check(candidate: _Candidate) -> _Checked | str:
    """The checked file, or the sentence saying why it is rejected."""
    try:
        data = candidate.load()
        image = decode_image(data, candidate.label)
    except (ImageUnreadable, DatasetError) as error:
        return str(error)
    digest = content_digest(data)
    return _Checked(digest, _extension(data), data, make_thumbnail(image))


def _checked(candidates: Iterable[_Candidate]) -> Iterator[tuple[_Candidate, _Checked | str]]:
    """``_check`` over a thread pool, results in input order, a bounded number of files in memory."""
    pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="ingest")
    window: deque[tuple[_Candidate, Future]] = deque()
    try:
        for candidate in candidates:
            window.append((candidate, pool.submit(_check, candidate)))
            if len(window) >= WORKERS * IN_FLIGHT_PER_WORKER:
                first, future = window.popleft()
                yield first, future.result()
        while window:
            first, future = window.popleft()
            yield first, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:  # builtins.open: what fault-injection tests wrap
        handle.write(data)


def _ingest(
    name: str,
    candidates: list[_Candidate],
    progress: Progress | None,
    rejected: list[tuple[str, str]],
    required_class: str | None = None,
    empty_classes: Iterable[str] = (),
) -> IngestReport:
    """Check, stage and commit the candidates (see the module docstring)."""
    folder = dataset_folder(name)
    staging = folder / INCOMING / uuid.uuid4().hex
    known = digests(folder)
    duplicates: list[tuple[str, str]] = []
    staged: list[tuple[_Candidate, _Checked]] = []
    seen: dict[str, str] = {}
    committed = False
    descriptor = None
    total = len(candidates)
    try:
        staging.mkdir(parents=True)
        descriptor = os.open(staging / STAGING_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        for done, (candidate, result) in enumerate(_checked(candidates), start=1):
            if progress is not None:
                progress(done, total, f"Checking photo {done} of {total}…")
            if isinstance(result, str):
                rejected.append((candidate.label, result))
            elif result.digest in known or result.digest in seen:
                duplicates.append((candidate.label, known.get(result.digest) or seen[result.digest]))
            else:
                seen[result.digest] = candidate.class_name
                _write(staging / candidate.class_name / result.file_name(candidate.test), result.data)
                _write(staging / THUMBS / f"{result.digest}.jpg", result.thumbnail)
                staged.append((candidate, result))
        with locked(folder):
            classes_before = set(class_names_in(folder))
            if required_class is not None and required_class not in classes_before:
                raise DatasetError(
                    f"The class '{required_class}' was deleted meanwhile, perhaps in another tab: add it again, "
                    "then add the images again. Nothing was added."
                )
            now = digests(folder)
            kept = []
            for candidate, result in staged:
                if result.digest in now:  # added by another tab while this upload was checked
                    duplicates.append((candidate.label, now[result.digest]))
                    (staging / candidate.class_name / result.file_name(candidate.test)).unlink()
                else:
                    kept.append((candidate, result))
            _write(staging / f"{COMMITTED}.partial", b"")
            os.replace(staging / f"{COMMITTED}.partial", staging / COMMITTED)
            committed = True
            placed = {image.digest: image.ref for image in place_staged(folder, staging)}
            lower = {c.casefold() for c in classes_before}
            for class_name in empty_classes:
                if class_name.casefold() not in lower:
                    (folder / class_name).mkdir(exist_ok=True)
            shutil.rmtree(staging)
            classes_after = set(class_names_in(folder))
    except OSError as error:
        if not committed:
            shutil.rmtree(staging, ignore_errors=True)
        then = "add the images again (nothing was added)" if not committed else "try again"
        raise data_home.cannot_write(folder, error, then=then) from error
    except BaseException:
        if not committed:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if descriptor is not None:
            os.close(descriptor)
    return IngestReport(
        added=[placed[result.digest] for _, result in kept],
        duplicates=duplicates,
        rejected=rejected,
        new_classes=sorted(classes_after - classes_before),
    )


def add_images(
    name: str, class_name: str, files: Iterable[tuple[str, bytes]], progress: Progress | None = None
) -> IngestReport:
    """Add uploaded files (or camera snapshots) to an existing class; see ``IngestReport`` for the outcome."""
    require_class(existing_folder(name), name, class_name)
    candidates = [
        _Candidate(file_name, class_name, False, (lambda data=data: bytes(data))) for file_name, data in files
    ]
    return _ingest(name, candidates, progress, [], required_class=class_name)


def import_zip(
    name: str,
    source: str | Path | BinaryIO,
    progress: Progress | None = None,
    limits: ZipLimits = DEFAULT_ZIP_LIMITS,
    create_classes: bool = True,
) -> IngestReport:
    """Add a zip's images: each class folder becomes a class (``test/`` images keep their test mark).

    With ``create_classes=False`` only folders naming an existing class are imported, the rest rejected."""
    existing = {c.casefold(): c for c in class_names_in(existing_folder(name))}
    with zip_members(source, limits) as contents:
        rejected = list(contents.rejected)
        classes: dict[str, str | None] = {}  # zip folder -> class name, or None when the folder cannot be one
        reasons: dict[str, str] = {}
        for class_folder in contents.class_folders:
            try:
                wanted = class_name_from_folder(class_folder)
            except DatasetError as error:
                classes[class_folder], reasons[class_folder] = None, f"its folder cannot be a class: {error}"
                continue
            if wanted.casefold() in existing:
                classes[class_folder] = existing[wanted.casefold()]
            elif create_classes:
                classes[class_folder] = existing.setdefault(wanted.casefold(), wanted)
            else:
                classes[class_folder] = None
                reasons[class_folder] = f"the dataset '{name}' has no class '{wanted}' (add it first)."
        candidates = []
        for image in contents.images:
            class_name = classes[image.class_folder]
            if class_name is None:
                rejected.append((image.member, f"{image.member} was not added: {reasons[image.class_folder]}"))
                continue
            candidates.append(
                _Candidate(image.member, class_name, image.test, (lambda member=image.member: contents.read(member)))
            )
        used = {c.class_name for c in candidates}
        empty = [c for c in classes.values() if c is not None and c not in used] if create_classes else []
        return _ingest(name, candidates, progress, rejected, empty_classes=empty)
