"""Zips in and out: which members of an untrusted zip are images of which class, and a dataset as a zip.

A zip is never extracted by member name: every member is classified first (paths that climb out, absolute paths,
symlinks, encrypted or oversized members are rejected with a reason), then read into memory, never more than the
size it declares. A zip that is empty, holds too many files or declares too many bytes in all (a zip bomb) is
refused whole before anything is read.
"""

from __future__ import annotations

import io
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.config import Config, setting
from core.datasets.store import images, summary
from core.errors import DatasetError
from core.images import DecodeLimits

JUNK_FOLDERS = frozenset({"__macosx"})
"""Folders archivers add (macOS resource forks): skipped silently."""

DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ZipLimits(Config):
    """How big a zip we agree to open; checked on the sizes it declares, before anything is read."""

    max_files: int = setting(
        20_000, "Most files in a zip", "Larger zips are refused whole; split them into several.", min=1, max=10**6
    )
    max_total_bytes: int = setting(
        2 * 2**30,
        "Largest zip, uncompressed (bytes)",
        "What the files of a zip add up to once unpacked; more is refused whole (a zip bomb looks like this).",
        min=1,
        max=2**40,
    )
    max_file_bytes: int = setting(
        DecodeLimits().max_bytes,
        "Largest file in a zip (bytes)",
        "Larger files are rejected one by one, as an upload would be.",
        min=1,
        max=2**31,
    )


DEFAULT_ZIP_LIMITS = ZipLimits()


@dataclass(frozen=True)
class ZipImage:
    """A member to import: its class folder (as named in the zip) and whether it sits under ``test/``."""

    member: str
    class_folder: str
    test: bool


@dataclass(frozen=True)
class ZipContents:
    """A classified zip, open for reading its images; use it as a context manager (or call ``close``)."""

    name: str
    images: list[ZipImage]
    rejected: list[tuple[str, str]]
    class_folders: list[str]
    archive: zipfile.ZipFile
    limits: ZipLimits

    def read(self, member: str) -> bytes:
        """The member's bytes, never more than it declares (a member holding more is refused)."""
        info = self.archive.getinfo(member)
        if info.file_size > self.limits.max_file_bytes:
            raise DatasetError(f"{member} is too large ({info.file_size:,} bytes): save a smaller copy.")
        try:
            with self.archive.open(info) as handle:
                data = handle.read(info.file_size + 1)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
            detail = " ".join(str(e).split())[:120] or type(e).__name__
            raise DatasetError(f"{member} cannot be unpacked ({detail}): the zip may be damaged.") from e
        if len(data) > info.file_size:
            raise DatasetError(f"{member} holds more bytes than the zip declares: the zip is damaged or crafted.")
        return data

    def close(self) -> None:
        self.archive.close()

    def __enter__(self) -> ZipContents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _source_name(source: str | Path | BinaryIO) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return Path(str(getattr(source, "name", "") or "The zip file")).name


def _open(source: str | Path | BinaryIO, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise DatasetError(f"{name} is not a zip file, or it is damaged: make the zip again and retry.") from None
    except OSError as error:
        raise DatasetError(f"{name} cannot be read ({error.strerror or error}): check the file and retry.") from None


def _path_problem(info: zipfile.ZipInfo, limits: ZipLimits) -> str | None:
    """Why a file member is refused before looking at its place in the layout, or None."""
    name = info.filename
    if name.startswith("/"):
        return "it has an absolute path"
    if "\\" in name or DRIVE.match(name):
        return "its path has a backslash or a drive letter"
    if ".." in name.split("/"):
        return "its path climbs out of the zip's folder (..)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "it is a symbolic link, not a file"
    if info.flag_bits & 0x1:
        return "it is encrypted (password-protected)"
    if info.file_size > limits.max_file_bytes:
        return f"it is too large ({info.file_size:,} bytes; the limit is {limits.max_file_bytes:,})"
    return None


def _skipped(parts: list[str]) -> bool:
    return parts[0].lower() in JUNK_FOLDERS or any(p.startswith(".") for p in parts)


def _layout(paths: list[list[str]]) -> tuple[int, bool]:
    """Where class folders are in these (file) paths: (index of the class component, split into train/test).

    Decided by folders only: a README next to the class folders is rejected, not taken for a layout."""
    start = 0
    if len({p[0] for p in paths}) == 1 and any(len(p) >= 3 for p in paths):
        start = 1  # one common top folder (the zip's own name): strip it
    firsts = {p[start].lower() for p in paths if len(p) > start + 1}
    if firsts and firsts <= {"train", "test"}:
        return start + 1, True
    if firsts == {"images"}:
        return start + 1, False
    return start, False


def zip_members(source: str | Path | BinaryIO, limits: ZipLimits = DEFAULT_ZIP_LIMITS) -> ZipContents:
    """Open a zip and classify its members (see the module docstring); ``DatasetError`` for a zip refused whole."""
    name = _source_name(source)
    archive = _open(source, name)
    try:
        return _classify(archive, name, limits)
    except BaseException:
        archive.close()
        raise


def _classify(archive: zipfile.ZipFile, name: str, limits: ZipLimits) -> ZipContents:
    infos = archive.infolist()
    if len(infos) > limits.max_files:
        raise DatasetError(
            f"{name} holds {len(infos):,} files, more than the {limits.max_files:,} one zip may hold: split it "
            "into smaller zips. Nothing was added."
        )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_total_bytes:
        raise DatasetError(
            f"{name} would unpack to {declared:,} bytes, more than the limit of {limits.max_total_bytes:,} (a zip "
            "bomb looks like this): split it into smaller zips. Nothing was added."
        )
    rejected: list[tuple[str, str]] = []
    files: list[tuple[zipfile.ZipInfo, list[str]]] = []
    folders: list[list[str]] = []
    for info in infos:
        parts = [p for p in info.filename.split("/") if p not in ("", ".")]
        if info.is_dir():
            if parts and not _skipped(parts) and ".." not in parts:
                folders.append(parts)
            continue
        if ".." not in parts and not info.filename.startswith("/") and parts and _skipped(parts):
            continue
        problem = _path_problem(info, limits)
        if problem:
            rejected.append((info.filename, f"{info.filename} was not added: {problem}."))
        else:
            files.append((info, parts))
    if not files and not rejected:
        raise DatasetError(f"{name} is empty: it holds no files. Nothing was added.")
    at, split = _layout([parts for _, parts in files] or folders)
    found: list[ZipImage] = []
    class_folders: dict[str, None] = {}
    for info, parts in files:
        if len(parts) < at + 2 or (split and parts[at - 1].lower() not in ("train", "test")):
            where = "train/<class>/ or test/<class>/" if split else "a class folder"
            rejected.append((info.filename, f"{info.filename} was not added: it is not inside {where}."))
            continue
        class_folders[parts[at]] = None
        found.append(ZipImage(info.filename, parts[at], split and parts[at - 1].lower() == "test"))
    for parts in folders:
        if len(parts) > at and (not split or parts[at - 1].lower() in ("train", "test")):
            class_folders.setdefault(parts[at], None)
    return ZipContents(name, found, rejected, list(class_folders), archive, limits)


def dataset_zip(name: str) -> bytes:
    """A dataset as a zip to download: ``<name>/<class>/<file>``, or ``<name>/train|test/<class>/<file>`` when
    some images are kept for testing, so importing it rebuilds the same dataset. Stored, not compressed."""
    described = summary(name)
    stored = images(name)
    split = any(image.test for image in stored)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for class_name in described.class_names:
            if not described.counts[class_name]:
                archive.writestr(f"{name}/{'train/' if split else ''}{class_name}/", b"")
        for image in stored:
            part = ("test/" if image.test else "train/") if split else ""
            file_name = image.path.name.replace(".test.", ".")
            try:
                archive.write(image.path, f"{name}/{part}{image.class_name}/{file_name}")
            except FileNotFoundError:
                continue  # moved in another tab while the zip was written
    return buffer.getvalue()
