"""TensorFlow's pooled CPU allocator for the processes that push images through a network on the CPU.

A forward pass of an EfficientNet at 224 px on a batch of 32 allocates and frees tens of tensors of 1 to
150 MB. TensorFlow's default CPU allocator hands each to glibc's malloc, which maps large blocks from the
kernel and gives them back, so every batch faults its memory in again page by page. Measured on a 2-core
machine with Lite0's extractor after a data pipeline had run in the process (a run's order of events):
2.3 million minor page faults and 5-6 s of kernel time per 384 images, 45 images/s. TensorFlow's BFC
allocator (the one it uses on GPUs, switched on for the CPU by ``TF_CPU_ALLOCATOR_USE_BFC``) keeps freed
memory in a pool: no page faults, 0.1 s of kernel time, 72-76 images/s from the same code.

The cost is memory kept after a peak: what the process needed once, it keeps until it ends (the pool only
grows, up to ``TF_CPU_BFC_MEM_LIMIT_IN_MB``, 64 GB by default). That suits the processes that ask for it: a
training worker and a foreground run (``core.training``), and the benchmarks. The app's server does not: its
TensorFlow work is small, and an augmentation preview there measured no faster with the pool (104 against 97
ms of CPU), while the server would keep its largest peak (an evaluation) for as long as it runs.

TensorFlow reads the variable once, when it first allocates, so ``use_pooled_cpu_allocator()`` is called
before TensorFlow is imported. A value the user set is kept (``TF_CPU_ALLOCATOR_USE_BFC=false`` turns the
pool off).
"""

from __future__ import annotations

import os
import sys

VARIABLE = "TF_CPU_ALLOCATOR_USE_BFC"


def use_pooled_cpu_allocator() -> bool:
    """Ask for the pooled allocator unless the user chose; True when TensorFlow will use it in this process
    (False once TensorFlow was imported before this call, or when the user turned it off)."""
    os.environ.setdefault(VARIABLE, "true")
    asked = os.environ[VARIABLE].strip().lower() in ("1", "true")
    return asked and "tensorflow" not in sys.modules
