"""The settings a run takes from the machine when the learner leaves them empty: batch size, mixed precision, XLA.

A learner on a laptop and an instructor on a GPU server run the same two commands; what differs is chosen here,
from what the driver reports (``core.system.gpu_details``), shown on the Train page, and overridable there and on
the command line. TensorFlow is not imported: the page shows the defaults before any run starts.

The rules, one table each (first matching row wins):

- **Mixed precision**: ``mixed_float16`` when every GPU has compute capability >= 7.0 (Volta and later: tensor
  cores, where float16 matrix maths is several times faster); ``off`` on older GPUs (float16 is no faster there,
  and its smaller range costs accuracy) and on a CPU (no speed gained, accuracy lost).
- **Batch size** (the global batch, over all GPUs together): on a CPU 32 for every regime, as before this module.
  On a GPU the smallest GPU's memory picks a row: >= 12 GB gives 64 for training from scratch (every layer keeps
  activations and gradients at 224 px) and 128 for the frozen and fine-tune regimes (a frozen backbone keeps no
  gradients; a fine-tune unfreezes only the top); under 12 GB halves them (32 and 64). With several GPUs the
  row's size is multiplied by their number, so each GPU gets the batch one GPU would (``MirroredStrategy`` splits
  the global batch).
- **Extraction batch** (images per forward pass when the feature cache extracts, on one device): 32 on a CPU,
  where a larger batch is no faster; on a GPU 256 on >= 12 GB and 128 under, from the same row as the batch size.
  Inference keeps no activations for a backward pass, so it takes twice the frozen regime's training batch, and
  a GPU's throughput keeps rising with the batch well past 32. Not multiplied by the GPU count: extraction calls
  the model on one device.
- **XLA** (``jit_compile``): off on a CPU, where it made EfficientNet training about 8x slower; Keras' ``"auto"``
  on a GPU.

A CPU-only machine (or a GPU machine with the CPU-only TensorFlow wheel, which ignores the GPU) therefore gets
exactly what every run got before: batch 32, float32, no XLA, extraction in batches of 32.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core import system
from core.system import GpuDetails

CPU_BATCH = 32
"""Every regime's batch size on a CPU: the value ``TrainConfig.batch_size`` had before machine defaults."""
CPU_EXTRACTION_BATCH = 32
"""Images per forward pass when extracting features on a CPU (features do not depend on it)."""


@dataclass(frozen=True)
class PrecisionRow:
    min_compute_capability: float
    mixed_precision: str
    why: str


PRECISION_ROWS: tuple[PrecisionRow, ...] = (
    PrecisionRow(7.0, "mixed_float16", "tensor cores (compute capability 7.0 or newer)"),
    PrecisionRow(0.0, "off", "no tensor cores (compute capability under 7.0)"),
)


@dataclass(frozen=True)
class BatchRow:
    min_memory_gib: float
    sizes: Mapping[str, int]  # regime -> batch size on one GPU
    extraction: int  # images per forward pass when extracting features on one GPU


BATCH_ROWS: tuple[BatchRow, ...] = (
    BatchRow(12.0, {"scratch": 64, "frozen": 128, "finetune": 128}, extraction=256),
    BatchRow(0.0, {"scratch": 32, "frozen": 64, "finetune": 64}, extraction=128),
)


@dataclass(frozen=True)
class MachineDefaults:
    """What a run on this machine takes for the settings left empty (or ``"auto"``)."""

    device: str  # 'CPU', 'NVIDIA H200', '2 × NVIDIA A100-SXM4-80GB'
    gpu_count: int
    mixed_precision: str  # 'off' or 'mixed_float16'
    batch_sizes: Mapping[str, int] = field(default_factory=dict)  # regime -> global batch; CPU_BATCH when absent
    extraction_batch: int = CPU_EXTRACTION_BATCH
    jit_compile: bool | str = False
    strategy: str = "default (CPU)"
    why: str = "a CPU gains no speed from mixed precision"

    @property
    def on_gpu(self) -> bool:
        return self.gpu_count > 0

    def batch_size(self, regime: str) -> int:
        return self.batch_sizes.get(regime, CPU_BATCH)

    def where(self) -> str:
        """'this CPU' or 'this GPU' / 'these 2 GPUs': how a form names the machine."""
        if not self.on_gpu:
            return "this CPU"
        return f"these {self.gpu_count} GPUs" if self.gpu_count > 1 else "this GPU"


CPU_DEFAULTS = MachineDefaults(device="CPU", gpu_count=0, mixed_precision="off")


def defaults_for(gpus: Sequence[GpuDetails]) -> MachineDefaults:
    """The policy: the defaults for a machine with these GPUs (none: the CPU's, unchanged from before)."""
    if not gpus:
        return CPU_DEFAULTS
    capability = min(gpu.compute_capability for gpu in gpus)
    precision = next(row for row in PRECISION_ROWS if capability >= row.min_compute_capability)
    memory = min(gpu.memory_gib for gpu in gpus)
    batch = next(row for row in BATCH_ROWS if memory >= row.min_memory_gib)
    names = sorted({gpu.name for gpu in gpus})
    count = len(gpus)
    return MachineDefaults(
        device=(f"{count} × " if count > 1 else "") + ", ".join(names),
        gpu_count=count,
        mixed_precision=precision.mixed_precision,
        batch_sizes={regime: size * count for regime, size in batch.sizes.items()},
        extraction_batch=batch.extraction,
        jit_compile="auto",
        strategy=f"mirrored over {count} GPUs" if count > 1 else "one GPU",
        why=precision.why,
    )


@functools.cache
def this_machine() -> MachineDefaults:
    """The defaults on this machine, asked of the driver once per process (a page renders often; GPUs stay put).
    Tests that fake ``nvidia-smi`` call ``this_machine.cache_clear()``."""
    return defaults_for(system.gpu_details() if system.tensorflow_is_cuda_build() else [])
