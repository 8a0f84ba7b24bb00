"""The decoded-image cache: a split's photos decoded and resized once, kept as one memory-mapped uint8 array.

Decoding a JPEG costs a fair share of a backbone's forward pass on a CPU, and every pipeline of a split used to
pay it again: a run's second view in another process, a second backbone at the same size, an evaluation, the
Explore map. The first full pass over a split writes what it decodes into ``cache/images/<key>.npy`` as it
goes by (no extra pass); later pipelines of the same files read that array instead of decoding.

- An entry is keyed by the split's files as listed (each path, label, size and modification time, in order),
  the image size and ``DECODER_VERSION``: a photo added, replaced, relabelled or removed, another split or
  another size is another key, so a stale entry is never read (``clear`` reclaims the space).
- It is written under a temporary name, then renamed; its metadata JSON (shape, count, labels, bytes, sha256),
  renamed last, marks it complete. An entry whose array does not match its metadata (truncated, altered) is
  deleted and decoded again.
- Only when it fits: at most ``MAX_BYTES`` and ``FREE_DISK_SHARE`` of the free disk. A data directory that
  cannot be written only means no cache: the pipeline still hands out every image.
- The entries together stay under ``MAX_BYTES``: a new entry evicts the least recently used ones (a data
  change leaves its old entry behind, unused, until then).

The feature cache's size and "clear cache" include these entries (``core.feature_cache``).
TensorFlow is imported inside the functions that build pipelines.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.data.decoding import DECODER_VERSION
from core.data.info import without_autotuning
from core.data_home import home_path, subdir
from core.errors import DataHomeUnavailable

CACHE_DIR = ("cache", "images")
FORMAT_VERSION = 1
MAX_BYTES = 2 * 2**30
FREE_DISK_SHARE = 0.25
READ_ROWS = 64  # rows handed to tf.data at a time when reading an entry
PARTIAL = ".partial-"


@dataclass(frozen=True, eq=False)
class CachedImages:
    """One complete entry: ``images[i]`` (uint8, memory-mapped) has label ``labels[i]``."""

    key: str
    images: np.ndarray
    labels: np.ndarray


def cache_folder() -> Path:
    """Where the entries are; created when the first one is written (reading needs no write)."""
    return home_path().joinpath(*CACHE_DIR)


def split_key(items: Iterable[tuple[Path, int]], image_size: int) -> str:
    """What decides an entry's pixels: the files in pipeline order as they are on disk now, size, decoder."""
    digest = hashlib.sha256(f"{FORMAT_VERSION}:{DECODER_VERSION}:{image_size}\n".encode())
    for path, label in items:
        try:
            stat = os.stat(path)
            found = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            found = "missing"
        digest.update(f"{path}\0{label}\0{found}\n".encode())
    return digest.hexdigest()[:40]


def entry_bytes(count: int, image_size: int) -> int:
    return count * image_size * image_size * 3


def fits(count: int, image_size: int) -> bool:
    """Whether a split of ``count`` images at ``image_size`` may be cached on this disk."""
    folder = cache_folder()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return False
    free = shutil.disk_usage(existing).free
    return entry_bytes(count, image_size) <= min(MAX_BYTES, FREE_DISK_SHARE * free)


def _paths(key: str) -> tuple[Path, Path]:
    folder = cache_folder()
    return folder / f"{key}.npy", folder / f"{key}.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove(key: str) -> None:
    for path in _paths(key):
        path.unlink(missing_ok=True)


def load(key: str) -> CachedImages | None:
    """A complete, intact entry; None when there is none, and (after deleting it) when it is truncated or
    does not match its metadata."""
    array_path, meta_path = _paths(key)
    if not meta_path.is_file():
        return None  # never finished, or another process is between its two renames: decode
    try:
        meta = json.loads(meta_path.read_text())
        labels = np.asarray(meta["labels"], dtype=np.int64)
        if (
            meta["format"] != FORMAT_VERSION
            or array_path.stat().st_size != meta["bytes"]
            or _sha256(array_path) != meta["sha256"]
        ):
            raise ValueError("the array does not match its metadata")
        images = np.load(array_path, mmap_mode="r")
        if list(images.shape) != meta["shape"] or images.dtype != np.uint8 or not 0 < len(labels) <= len(images):
            raise ValueError("the array's shape does not match its metadata")
    except (OSError, ValueError, KeyError, TypeError):
        _remove(key)
        return None
    try:
        os.utime(meta_path)  # used now: the last to be evicted
    except OSError:
        pass  # a read-only data directory: nothing is evicted there either
    return CachedImages(key, images[: len(labels)], labels)


def _evict(keep: str) -> None:
    """Delete the least recently used entries, other than ``keep``, until all of them fit in ``MAX_BYTES``."""
    metas = sorted(cache_folder().glob("*.json"), key=lambda path: path.stat().st_mtime)
    complete = [path.stem for path in metas if PARTIAL not in path.name]
    total = sum(sum(path.stat().st_size for path in _paths(key) if path.exists()) for key in complete)
    for key in complete:
        if total <= MAX_BYTES:
            break
        if key != keep:
            total -= sum(path.stat().st_size for path in _paths(key) if path.exists())
            _remove(key)


class _Writer:
    """An entry being written row by row to a temporary file, hashed on the way."""

    def __init__(self, key: str, capacity: int, image_size: int) -> None:
        folder = subdir(*CACHE_DIR)
        self.key, self.capacity, self.count = key, capacity, 0
        self.shape = (capacity, image_size, image_size, 3)
        self.partial = folder / f"{key}{PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}.npy"
        self.file = open(self.partial, "wb")
        self.digest = hashlib.sha256()
        header = {"descr": "|u1", "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(self, header)

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.digest.update(data)

    def add(self, image: np.ndarray) -> bool:
        """Append one image; False when it cannot be kept (more images than listed, a shape that is wrong)."""
        if self.count >= self.capacity or image.shape != self.shape[1:] or image.dtype != np.uint8:
            return False
        self.write(np.ascontiguousarray(image).tobytes())
        self.count += 1
        return True

    def finish(self, labels: list[int]) -> None:
        row = int(np.prod(self.shape[1:]))
        for _ in range(self.capacity - self.count):
            self.write(bytes(row))
        self.file.close()
        array_path, meta_path = _paths(self.key)
        partial_meta = self.partial.with_suffix(".json")
        meta = {
            "format": FORMAT_VERSION,
            "shape": list(self.shape),
            "count": len(labels),
            "labels": labels,
            "bytes": self.partial.stat().st_size,
            "sha256": self.digest.hexdigest(),
            "created_at": time.time(),
        }
        try:
            partial_meta.write_text(json.dumps(meta))
            os.replace(self.partial, array_path)
            os.replace(partial_meta, meta_path)
        finally:
            partial_meta.unlink(missing_ok=True)
        _evict(keep=self.key)

    def discard(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)


def write_through(
    key: str, elements: Iterable[tuple[np.ndarray, Any]], *, capacity: int, image_size: int
) -> Iterator[tuple[np.ndarray, Any]]:
    """Hand ``elements`` on unchanged while writing them into the entry ``key``, kept only if every element
    went by; a consumer that stops early, or a disk that refuses, leaves no entry and no error."""
    try:
        writer: _Writer | None = _Writer(key, capacity, image_size)
    except (OSError, DataHomeUnavailable):
        writer = None
    labels: list[int] = []
    try:
        for image, label in elements:
            if writer is not None:
                try:
                    kept = writer.add(image)
                except OSError:
                    kept = False
                if not kept:
                    writer.discard()
                    writer = None
            labels.append(int(label))
            yield image, label
        if writer is not None and labels:
            try:
                writer.finish(labels)
            except OSError:
                pass  # no cache this time: the images were all handed out
            writer = None
    finally:
        if writer is not None:
            writer.discard()


def cached_dataset(entry: CachedImages) -> Any:
    """An entry as an unbatched ``tf.data`` pipeline of ``(uint8 image, int64 label)``, read from the map."""
    import tensorflow as tf

    images, labels = entry.images, entry.labels
    size = images.shape[1]

    def rows() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(labels), READ_ROWS):
            yield np.asarray(images[start : start + READ_ROWS]), labels[start : start + READ_ROWS]

    signature = (tf.TensorSpec((None, size, size, 3), tf.uint8), tf.TensorSpec((None,), tf.int64))
    return tf.data.Dataset.from_generator(rows, output_signature=signature).unbatch()


def written_dataset(decoded: Any, key: str, *, capacity: int, image_size: int) -> Any:
    """``decoded`` (unbatched uint8 images and labels), writing the entry ``key`` on its first full pass.

    ``decoded`` is iterated inside the generator, whose ``py_func`` holds the GIL when the pass ends and that
    iterator is destroyed, so it runs ``without_autotuning`` (the outer pipeline's options do not reach it)."""
    import tensorflow as tf

    decoded = without_autotuning(decoded)
    signature = (tf.TensorSpec((image_size, image_size, 3), tf.uint8), tf.TensorSpec((), tf.int64))
    return tf.data.Dataset.from_generator(
        lambda: write_through(key, decoded.as_numpy_iterator(), capacity=capacity, image_size=image_size),
        output_signature=signature,
    )


def size_bytes() -> int:
    """Disk space the entries take."""
    folder = cache_folder()
    if not folder.is_dir():
        return 0
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def _written_by_live_process(path: Path) -> bool:
    from core.runs import process_alive

    pid = path.name.partition(PARTIAL)[2].partition("-")[0]
    return pid.isdigit() and process_alive(int(pid))


def clear() -> int:
    """Delete every entry (they are decoded again on demand); returns the bytes freed. An entry a live process
    is still writing is left alone."""
    folder = cache_folder()
    if not folder.is_dir():
        return 0
    freed = 0
    for path in folder.iterdir():
        if path.is_file() and not _written_by_live_process(path):
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
    return freed
