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
