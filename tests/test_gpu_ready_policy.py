"""GPU-ready, part B: the defaults a run takes from the machine (``core.machine_defaults``), shown and overridable.

No GPU is needed: ``nvidia-smi`` is faked by a script on PATH, and the policy is a function of the GPUs it
reports. Above all, a CPU-only machine keeps what every run had before: batch 32, float32, no XLA.
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import machine_defaults, runs, system
from core.config import MIXED_PRECISION_CHOICES, ModelConfig, RunConfig, TrainConfig
from core.machine_defaults import CPU_DEFAULTS, defaults_for, this_machine
from core.system import GpuDetails
from core.training.cli import build_config, parser

ROOT = Path(__file__).resolve().parents[1]
V100 = "Tesla V100-SXM2-16GB, 16384 MiB, 7.0"
A100 = "NVIDIA A100-SXM4-40GB, 40960 MiB, 8.0"
H200 = "NVIDIA H200, 143771 MiB, 9.0"
GTX1070 = "NVIDIA GeForce GTX 1070, 8192 MiB, 6.1"
REGIMES = ("scratch", "frozen", "finetune")


def fake_nvidia_smi(folder: Path, monkeypatch, *, lines: list[str] | None = None, fails: bool = False) -> None:
    """Put a fake ``nvidia-smi`` first on PATH (printing ``lines`` for ``--query-gpu``), or none at all
    (``lines=None`` and not ``fails``: PATH holds only a folder without it)."""
    folder.mkdir(exist_ok=True)
    if lines is not None or fails:
        script = folder / "nvidia-smi"
        body = "echo 'NVIDIA-SMI has failed' >&2; exit 9" if fails else "cat <<'EOF'\n" + "\n".join(lines) + "\nEOF"
        script.write_text("#!/bin/sh\n" + body + "\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/usr/bin{os.pathsep}/bin")
    this_machine.cache_clear()


@pytest.fixture(autouse=True)
def fresh_machine():
    this_machine.cache_clear()
    yield
    this_machine.cache_clear()


# ------------------------------------------------------------------------------------- reading the GPUs


def test_gpu_details_are_read_from_nvidia_smi_query(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, lines=[H200, "garbage line", GTX1070])
    assert system.gpu_details() == [
        GpuDetails("NVIDIA H200", 143771, 9.0),
        GpuDetails("NVIDIA GeForce GTX 1070", 8192, 6.1),
    ]


@pytest.mark.parametrize("fails", [True, False])
def test_no_gpus_when_nvidia_smi_fails_or_is_missing(tmp_path, monkeypatch, fails):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, fails=fails)
    assert system.gpu_details() == []


# ------------------------------------------------------------------------------------------- the policy


def gpus(*lines: str) -> list[GpuDetails]:
    return [system._gpu_line(line) for line in lines]


def test_no_gpu_gives_todays_cpu_defaults():
    machine = defaults_for([])
    assert machine == CPU_DEFAULTS
    assert [machine.batch_size(r) for r in REGIMES] == [32, 32, 32]
    assert (machine.mixed_precision, machine.jit_compile, machine.on_gpu) == ("off", False, False)
    assert machine.where() == "this CPU"
    assert machine.extraction_batch == 32


@pytest.mark.parametrize("line", [V100, A100, H200])
def test_a_gpu_with_tensor_cores_and_16_gb_or_more(line):
    machine = defaults_for(gpus(line))
    assert (machine.mixed_precision, machine.jit_compile, machine.strategy) == ("mixed_float16", "auto", "one GPU")
    assert {r: machine.batch_size(r) for r in REGIMES} == {"scratch": 64, "frozen": 128, "finetune": 128}
    assert machine.where() == "this GPU" and machine.device == line.split(",")[0]
    assert machine.extraction_batch == 256


def test_an_old_gpu_gets_no_mixed_precision_and_under_12_gb_half_the_batch():
    machine = defaults_for(gpus(GTX1070))
    assert (machine.mixed_precision, machine.jit_compile) == ("off", "auto")
    assert {r: machine.batch_size(r) for r in REGIMES} == {"scratch": 32, "frozen": 64, "finetune": 64}
    assert machine.extraction_batch == 128


def test_several_gpus_are_mirrored_and_each_gets_one_gpus_batch():
    machine = defaults_for(gpus(A100, A100, A100, A100))
    assert (machine.strategy, machine.device, machine.where()) == (
        "mirrored over 4 GPUs",
        "4 × NVIDIA A100-SXM4-40GB",
        "these 4 GPUs",
    )
    assert {r: machine.batch_size(r) for r in REGIMES} == {"scratch": 256, "frozen": 512, "finetune": 512}
    assert machine.mixed_precision == "mixed_float16"
    assert machine.extraction_batch == 256  # extraction calls the model on one device


def test_mixed_gpus_follow_the_weakest():
    """An old card among new ones decides: float16 without tensor cores is no faster, and the batch must fit."""
    machine = defaults_for(gpus(H200, GTX1070))
    assert machine.mixed_precision == "off"
    assert machine.batch_size("frozen") == 2 * 64


# ------------------------------------------------------------------- this machine, and what a run uses


def test_a_cpu_only_machine_behaves_exactly_as_before(tmp_path, monkeypatch):
    """The pin: without a GPU every effective value is today's: batch 32, float32 ('off'), no XLA; a stored run
    says so; and the defaults chosen by the machine are the old TrainConfig defaults written out."""
    fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    assert this_machine() == CPU_DEFAULTS
    for regime, model in (
        ("scratch", ModelConfig(regime="scratch")),
        ("frozen", ModelConfig()),
        ("finetune", ModelConfig(regime="finetune", parent_run_id="x")),
    ):
        config = RunConfig(model=model)
        assert (config.effective_batch_size, config.effective_mixed_precision) == (32, "off"), regime
        assert config.resolved().train == TrainConfig(batch_size=32, mixed_precision="off"), regime
    assert this_machine().jit_compile is False
    run_id = runs.create_run(RunConfig())
    stored = runs.get_run(run_id).config.train
    assert (stored.batch_size, stored.mixed_precision) == (32, "off")
    assert runs.config_summary(RunConfig())["batch_size"] == 32


def test_the_cpu_training_path_keeps_float32_and_no_xla(tmp_path, monkeypatch):
    """What the engine applies on this CPU-only machine (TensorFlow sees no GPU), whatever was asked."""
    from core import devices

    fake_nvidia_smi(tmp_path / "bin", monkeypatch)
    if devices.has_accelerator():
        pytest.skip("this machine has a GPU or TPU")
    import keras

    try:
        assert devices.apply_precision(RunConfig().effective_mixed_precision) == "float32"
        assert devices.apply_precision("mixed_float16") == "float32"
        assert devices.jit_compile_setting() is False
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_gpu_with_the_cpu_only_tensorflow_keeps_the_cpu_defaults(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, lines=[H200])
    monkeypatch.setattr(system, "tensorflow_is_cuda_build", lambda: False)
    assert this_machine() == CPU_DEFAULTS
    monkeypatch.setattr(system, "tensorflow_is_cuda_build", lambda: True)
    this_machine.cache_clear()
    assert this_machine().mixed_precision == "mixed_float16"


def test_on_a_gpu_the_run_stores_the_values_it_used_and_a_choice_wins(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path / "bin", monkeypatch, lines=[H200])
    monkeypatch.setattr(system, "tensorflow_is_cuda_build", lambda: True)
    scratch = RunConfig(model=ModelConfig(regime="scratch"))
    assert (scratch.effective_batch_size, scratch.effective_mixed_precision) == (64, "mixed_float16")
    stored = runs.get_run(runs.create_run(scratch)).config
    assert (stored.train.batch_size, stored.train.mixed_precision) == (64, "mixed_float16")
    this_machine.cache_clear()
    fake_nvidia_smi(tmp_path / "none", monkeypatch)  # shown later on a CPU: still what it used
    assert (stored.effective_batch_size, stored.effective_mixed_precision) == (64, "mixed_float16")
    chosen = RunConfig(train=TrainConfig(batch_size=16, mixed_precision="off"))
    assert chosen.resolved(defaults_for(gpus(H200))) == chosen


# ------------------------------------------------------------------------------------- the Train page


def open_train_page(machine, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(machine_defaults, "this_machine", lambda: machine)
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.mark.parametrize(
    "machine, batch, auto",
    [
        (CPU_DEFAULTS, "32 on this CPU", "auto (off on this CPU)"),
        (defaults_for(gpus(H200)), "128 on this GPU", "auto (mixed float16 on this GPU)"),
    ],
)
def test_the_train_form_shows_the_machines_defaults_and_offers_the_others(monkeypatch, machine, batch, auto):
    at = open_train_page(machine, monkeypatch)
    box = at.number_input(key="train_frozen_batch")
    assert (box.value, box.proto.placeholder) == (None, batch)
    precision = at.selectbox(key="train_frozen_precision")
    assert precision.value == "auto"
    assert precision.options == [auto, "off", "mixed float16", "mixed bfloat16"]
    caption = " ".join(c.value for c in at.caption)
    assert ("batch 32, no mixed precision, jit_compile off" in caption) == (not machine.on_gpu)
    assert ("batch 64 from scratch and 128 frozen or fine-tune, mixed_float16" in caption) == machine.on_gpu


# ------------------------------------------------------------------------------------------ the CLI


def test_the_cli_accepts_auto_and_leaves_both_to_the_machine():
    assert "auto" in MIXED_PRECISION_CHOICES and TrainConfig().mixed_precision == "auto"
    config = build_config(parser().parse_args(["--mixed-precision", "auto"]))
    assert (config.train.mixed_precision, config.train.batch_size) == ("auto", None)
    config = build_config(parser().parse_args(["--mixed-precision", "mixed_float16", "--batch-size", "48"]))
    assert (config.train.mixed_precision, config.train.batch_size) == ("mixed_float16", 48)


def test_cli_help_names_the_machine_defaults():
    text = " ".join(parser().format_help().split())
    assert "auto" in text and "32 on a CPU" in text


# ------------------------------------------------------------------- mixed precision survives saving

LOAD_AND_PREDICT = """
import sys
import numpy as np
import keras
from core.models import load_saved_model
assert keras.config.dtype_policy().name == "float32"
model = load_saved_model(sys.argv[1], compile=False)
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
"""


def test_a_mixed_float16_model_keeps_a_float32_softmax_and_predicts_the_same_after_loading(tmp_path):
    """Built under mixed_float16 (on a CPU Keras runs it, slowly: tiny, 32 px, weights none), saved, then loaded
    in a fresh process under the default float32 policy: the same classes come out."""
    import keras

    from core.models import build_model

    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        keras.utils.set_random_seed(0)
        model = build_model(ModelConfig(backbone="EfficientNetB0", weights="none", image_size=32), 3)
        assert model.layers[-1].dtype_policy.compute_dtype == "float32"
        assert any(layer.dtype_policy.compute_dtype == "float16" for layer in model.layers)
        images = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype("float32")
        before = model.predict(images, verbose=0)
        assert before.dtype == np.float32
        model.save(tmp_path / "model.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_AND_PREDICT,
            str(tmp_path / "model.keras"),
            str(tmp_path / "images.npy"),
            str(tmp_path / "after.npy"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    after = np.load(tmp_path / "after.npy")
    assert after.dtype == np.float32
    np.testing.assert_array_equal(before.argmax(axis=1), after.argmax(axis=1))
    np.testing.assert_allclose(before, after, atol=2e-2)


def test_the_gpu_benchmark_says_why_it_cannot_run_without_a_gpu(tmp_path):
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == {"gpu": False, "reason": "nvidia-smi lists no GPU"}
