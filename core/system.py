"""What this machine is and what works on it offline, found without importing TensorFlow.

The Home page must render within a few seconds, so versions come from package metadata, GPUs
from ``nvidia-smi``, and dataset availability from files on disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "tensorflow-datasets", "streamlit")


@dataclass(frozen=True)
class Machine:
    cpu_count: int
    gpus: list[str]
    versions: dict[str, str]

    @property
    def accelerator(self) -> str:
        if self.gpus:
            return f"{len(self.gpus)} GPU(s): " + ", ".join(self.gpus)
        return f"CPU only ({self.cpu_count} cores)"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def nvidia_gpus() -> list[str]:
    """GPU names from ``nvidia-smi -L`` (empty when there is none or no driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(":", 1)[1].split("(")[0].strip() for line in out.splitlines() if line.startswith("GPU")]


@dataclass(frozen=True)
class GpuDetails:
    """One GPU as the driver reports it: what the machine's defaults (``core.machine_defaults``) are chosen from."""

    name: str
    memory_mib: int
    compute_capability: float

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024


GPU_QUERY = ("nvidia-smi", "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader")


def gpu_details() -> list[GpuDetails]:
    """Name, memory and compute capability of each GPU, from ``nvidia-smi --query-gpu`` (empty when there is no
    GPU or no driver, and a line the driver words differently is skipped rather than guessed at)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(list(GPU_QUERY), capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [gpu for line in out.stdout.splitlines() if (gpu := _gpu_line(line)) is not None]


def _gpu_line(line: str) -> GpuDetails | None:
    """'NVIDIA H200, 143771 MiB, 9.0' -> GpuDetails('NVIDIA H200', 143771, 9.0)."""
    parts = [part.strip() for part in line.rsplit(",", 2)]
    if len(parts) != 3 or not parts[0]:
        return None
    try:
        memory = int(parts[1].split()[0])
        capability = float(parts[2])
    except (ValueError, IndexError):
        return None
    return GpuDetails(parts[0], memory, capability)


def machine() -> Machine:
    versions = {name: v for name in PACKAGES if (v := _version(name))}
    return Machine(cpu_count=os.cpu_count() or 1, gpus=nvidia_gpus(), versions=versions)


def tfds_prepared(name: str, data_dirs: list[Path]) -> bool:
    """True when a prepared copy of a TFDS dataset is on disk (its ``dataset_info.json`` exists)."""
    return any(any((d / name).glob("*/dataset_info.json")) for d in data_dirs if (d / name).is_dir())


@dataclass(frozen=True)
class TensorFlowBuild:
    """The TensorFlow build installed here, from package metadata: which wheel decides whether a GPU can be used
    at all (``tensorflow-cpu`` never sees one; ``tensorflow`` does when its CUDA library wheels are installed),
    and the Home page must say so without importing TensorFlow."""

    build: str  # "cuda" (the tensorflow wheel), "cpu" (tensorflow-cpu) or "none"
    package: str  # the installed wheel's name, "" when none
    version: str
    cuda_missing: tuple[str, ...]  # CUDA library wheels the tensorflow wheel's "and-cuda" extra wants, not installed
    gpus: tuple[str, ...]  # from nvidia-smi

    @property
    def uses_gpu(self) -> bool:
        return bool(self.gpus) and self.build == "cuda" and not self.cuda_missing

    @property
    def label(self) -> str:
        if self.build == "none":
            return "not installed"
        kind = {"cuda": "CUDA build", "cpu": "CPU-only build"}[self.build]
        missing = f", without its CUDA libraries ({', '.join(self.cuda_missing)})" if self.cuda_missing else ""
        return f"{kind} ({self.package} {self.version}{missing})"

    @property
    def fix(self) -> str:
        """One sentence with the command that makes this machine's TensorFlow fit its hardware ("" when it does)."""
        return next((sentence for applies, sentence in _BUILD_FIXES if applies(self)), "")


_REINSTALL = "`rm .venv/.runtime` and then `make run`"
_BUILD_FIXES = (
    (lambda b: b.build == "none", "TensorFlow is not installed here: `make run` installs it."),
    (
        lambda b: bool(b.gpus) and b.build == "cpu",
        "This machine has an NVIDIA GPU but the CPU-only TensorFlow build (tensorflow-cpu) is installed, so runs "
        f"train on the CPU: `make run TF_BUILD=cuda` installs the CUDA build (as does {_REINSTALL}).",
    ),
    (
        lambda b: bool(b.gpus) and b.build == "cuda" and bool(b.cuda_missing),
        "TensorFlow's CUDA build is installed without its CUDA libraries, so runs train on the CPU: "
        f"{_REINSTALL} installs them.",
    ),
)


def _cuda_libraries(package: str) -> list[str]:
    """The wheels the package's ``and-cuda`` extra installs (nvidia-cudnn-cu12 and so on), read from its own
    metadata so a TensorFlow upgrade that moves to other CUDA wheels needs no change here."""
    names = []
    for requirement in metadata.requires(package) or []:
        if 'extra == "and-cuda"' in requirement:
            name = requirement.split(";")[0]
            for stop in "<>=!~[( ":
                name = name.split(stop)[0]
            names.append(name)
    return names


def tensorflow_is_cuda_build() -> bool:
    """The installed wheel can run on a GPU: ``tensorflow`` (the CUDA build), not ``tensorflow-cpu``, which ignores
    a GPU even when a driver is present (so such a machine keeps the CPU's defaults and device)."""
    return _version("tensorflow") is not None


def tensorflow_build(gpus: list[str] | None = None) -> TensorFlowBuild:
    """Which TensorFlow build is installed; ``gpus`` defaults to asking nvidia-smi."""
    gpus = nvidia_gpus() if gpus is None else gpus
    package, version = next(((name, v) for name in ("tensorflow", "tensorflow-cpu") if (v := _version(name))), ("", ""))
    build = {"tensorflow": "cuda", "tensorflow-cpu": "cpu", "": "none"}[package]
    missing = tuple(lib for lib in _cuda_libraries(package) if not _version(lib)) if build == "cuda" else ()
    return TensorFlowBuild(build=build, package=package, version=version, cuda_missing=missing, gpus=tuple(gpus))
