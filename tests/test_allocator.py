"""TensorFlow's pooled CPU allocator (core.allocator): asked for before TensorFlow starts, in the processes that train.

TensorFlow only reports a CPU device's memory when the pooled (BFC) allocator serves it, which shows which
allocator a process got. Each case runs in a fresh interpreter: the choice is made once, at TensorFlow's start.
"""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SHOW_ALLOCATOR = """
import sys
from core.allocator import use_pooled_cpu_allocator
asked = use_pooled_cpu_allocator() if "ask" in sys.argv else None
import tensorflow as tf
tf.linalg.matmul(tf.ones((64, 64)), tf.ones((64, 64))).numpy()
try:
    pooled = tf.config.experimental.get_memory_info("CPU:0")["peak"] > 0
except ValueError:
    pooled = False
print(asked, pooled)
"""


def run_python(code: str, *args: str, **env: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPU_ALLOCATOR_USE_BFC"}
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**environment, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_a_process_that_asks_before_tensorflow_starts_gets_the_pool_and_one_that_does_not_keeps_the_default():
    assert run_python(SHOW_ALLOCATOR, "ask") == "True True"
    assert run_python(SHOW_ALLOCATOR) == "None False"


def test_the_users_choice_is_kept():
    assert run_python(SHOW_ALLOCATOR, "ask", TF_CPU_ALLOCATOR_USE_BFC="false") == "False False"


def test_asking_after_tensorflow_started_says_it_is_too_late():
    late = "import tensorflow\nfrom core.allocator import use_pooled_cpu_allocator\nprint(use_pooled_cpu_allocator())"
    assert run_python(late) == "False"


@pytest.mark.parametrize("module", ["core.training.worker", "core.training.cli"])
def test_the_training_entry_points_leave_tensorflow_unimported_until_they_have_asked(module):
    """The worker and the CLI ask first thing in main(); importing them must not start TensorFlow before."""
    assert run_python(f"import sys, {module}\nprint('tensorflow' in sys.modules)") == "False"
