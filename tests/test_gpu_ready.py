"""GPU-ready in the same two commands (issue 19), tested on a CPU by faking ``nvidia-smi`` and package metadata."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import system

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
MAKE = shutil.which("make")

# ---- Part A: the build chosen for you ----------------------------------------------------------------------------

needs_make = pytest.mark.skipif(MAKE is None, reason="make is not installed")

FAKE_NVIDIA_SMI = {
    "one GPU": 'echo "GPU 0: NVIDIA H200 (UUID: GPU-0f1e2d3c)"',
    "two GPUs": 'echo "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-1)"; echo "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-2)"',
    "no device": 'echo "No devices were found"; exit 6',
    "no driver": 'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver."; exit 9',
    "prints a GPU but fails": 'echo "GPU 0: NVIDIA H200 (UUID: GPU-1)"; exit 9',
}


def path_without_nvidia_smi() -> str:
    return os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "nvidia-smi").exists()
    )


def make(tmp_path: Path, *args: str, fake: str | None = None, env: dict[str, str] | None = None) -> str:
    """Runs make in the checkout with a fake ``nvidia-smi`` (or none) first on PATH and VENV in tmp_path."""
    path = path_without_nvidia_smi()
    if fake is not None:
        bin_dir = tmp_path / "fake-bin"
        bin_dir.mkdir(exist_ok=True)
        script = bin_dir / "nvidia-smi"
        script.write_text(f"#!/bin/sh\n{FAKE_NVIDIA_SMI[fake]}\n")
        script.chmod(0o755)
        path = f"{bin_dir}{os.pathsep}{path}"
    environment = {k: v for k, v in os.environ.items() if k not in {"TF_BUILD", "MAKEFLAGS", "MFLAGS"}}
    environment |= {"PATH": path, **(env or {})}
    result = subprocess.run(
        [MAKE, "-C", str(ROOT), f"VENV={tmp_path / 'venv'}", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_make
@pytest.mark.parametrize(
    ("fake", "expected"),
    [
        ("one GPU", "cuda: nvidia-smi -L lists 1 GPU(s); installs requirements-cuda.txt"),
        ("two GPUs", "cuda: nvidia-smi -L lists 2 GPU(s); installs requirements-cuda.txt"),
        ("no device", "cpu: nvidia-smi -L failed or lists no GPU; installs requirements.txt"),
        ("no driver", "cpu: nvidia-smi -L failed or lists no GPU; installs requirements.txt"),
        ("prints a GPU but fails", "cpu: nvidia-smi -L failed or lists no GPU; installs requirements.txt"),
        (None, "cpu: no nvidia-smi on PATH; installs requirements.txt"),
    ],
)
def test_tf_build_follows_nvidia_smi(tmp_path, fake, expected):
    assert make(tmp_path, "-s", "tf-build", fake=fake).strip() == expected


@needs_make
def test_tf_build_given_wins_over_the_gpu(tmp_path):
    line = make(tmp_path, "-s", "tf-build", "TF_BUILD=cpu", fake="one GPU").strip()
    assert line == "cpu: TF_BUILD=cpu was set (command line); installs requirements.txt"
    line = make(tmp_path, "-s", "tf-build", fake=None, env={"TF_BUILD": "cuda"}).strip()
    assert line == "cuda: TF_BUILD=cuda was set (environment); installs requirements-cuda.txt"


@needs_make
def test_an_unknown_tf_build_is_refused_in_a_sentence(tmp_path):
    result = subprocess.run(
        [MAKE, "-C", str(ROOT), "-s", "tf-build", "TF_BUILD=gpu"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "TF_BUILD is 'gpu'; it must be cpu or cuda" in result.stderr


def pip_lines(dry_run: str) -> list[str]:
    return [line for line in dry_run.splitlines() if "/bin/pip " in line]


@needs_make
def test_make_run_installs_the_cuda_build_on_a_gpu_machine_and_removes_the_cpu_wheel_first(tmp_path):
    pips = pip_lines(make(tmp_path, "-n", "run", fake="one GPU"))
    assert "uninstall --quiet --yes tensorflow-cpu" in pips[0] and pips[0].startswith("if ")
    assert pips[1].endswith("pip install --quiet -r requirements-cuda.txt")
    assert len(pips) == 2


@needs_make
@pytest.mark.parametrize("fake", [None, "no driver"])
def test_make_run_and_test_install_the_cpu_build_elsewhere_as_before(tmp_path, fake):
    pips = pip_lines(make(tmp_path, "-n", "run", fake=fake))
    assert "uninstall --quiet --yes tensorflow;" in pips[0]
    assert [p.split("/bin/")[-1] for p in pips[1:]] == ["pip install --quiet -r requirements.txt"]
    pips = pip_lines(make(tmp_path, "-n", "test", fake=fake))
    assert [p.split("/bin/")[-1] for p in pips[1:]] == [
        "pip install --quiet -r requirements.txt",
        "pip install --quiet -r requirements-test.txt",
    ]


@needs_make
def test_a_venv_built_for_one_build_is_reinstalled_when_the_choice_changes(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / ".runtime").touch()
    (venv / ".tf-build").write_text("cpu\n")
    assert pip_lines(make(tmp_path, "-n", "run")) == []  # up to date: nothing to install
    assert "requirements-cuda.txt" in pip_lines(make(tmp_path, "-n", "run", fake="one GPU"))[-1]
    assert "requirements-cuda.txt" in pip_lines(make(tmp_path, "-n", "run", "TF_BUILD=cuda"))[-1]


def test_requirements_split_keeps_tensorflow_out_of_the_base_and_test_files():
    def lines(name: str) -> list[str]:
        text = (ROOT / name).read_text().splitlines()
        return [line.split("#")[0].strip() for line in text if line.split("#")[0].strip()]

    def is_tensorflow(line: str) -> bool:
        return line.split("==")[0].split("[")[0] in {"tensorflow", "tensorflow-cpu"}

    assert "tensorflow-datasets==4.9.10" in lines("requirements-base.txt")
    assert not [line for line in lines("requirements-base.txt") if is_tensorflow(line)]
    assert lines("requirements.txt") == ["-r requirements-base.txt", "tensorflow-cpu==2.21.0"]
    assert lines("requirements-cuda.txt") == ["-r requirements-base.txt", "tensorflow[and-cuda]==2.21.0"]
    test_lines = lines("requirements-test.txt")
    assert test_lines[0] == "-r requirements-base.txt"
    assert not [line for line in test_lines if is_tensorflow(line) or "requirements.txt" in line]


def fake_packages(monkeypatch, installed: dict[str, str], cuda_extra: list[str] | None = None) -> None:
    monkeypatch.setattr(system, "_version", installed.get)
    monkeypatch.setattr(system, "_cuda_libraries", lambda package: list(cuda_extra or []))


CUDA_EXTRA = ["nvidia-cublas-cu12", "nvidia-cudnn-cu12"]


@pytest.mark.parametrize(
    ("installed", "gpus", "build", "label", "uses_gpu", "fix"),
    [
        ({"tensorflow-cpu": "2.21.0"}, [], "cpu", "CPU-only build (tensorflow-cpu 2.21.0)", False, ""),
        ({"tensorflow-cpu": "2.21.0"}, ["NVIDIA H200"], "cpu", "CPU-only", False, "`make run TF_BUILD=cuda`"),
        (
            {"tensorflow": "2.21.0", "nvidia-cublas-cu12": "12.9", "nvidia-cudnn-cu12": "9.3"},
            ["NVIDIA H200"],
            "cuda",
            "CUDA build (tensorflow 2.21.0)",
            True,
            "",
        ),
        (
            {"tensorflow": "2.21.0", "nvidia-cublas-cu12": "12.9"},
            ["NVIDIA H200"],
            "cuda",
            "CUDA build (tensorflow 2.21.0, without its CUDA libraries (nvidia-cudnn-cu12))",
            False,
            "`rm .venv/.runtime` and then `make run` installs them",
        ),
        ({"tensorflow": "2.21.0"}, [], "cuda", "CUDA build", False, ""),  # no GPU: nothing to fix
        ({}, [], "none", "not installed", False, "`make run` installs it"),
    ],
)
def test_tensorflow_build_from_package_metadata(monkeypatch, installed, gpus, build, label, uses_gpu, fix):
    fake_packages(monkeypatch, installed, CUDA_EXTRA)
    found = system.tensorflow_build(gpus)
    assert (found.build, found.uses_gpu) == (build, uses_gpu)
    assert found.label.startswith(label)
    assert (fix in found.fix) if fix else found.fix == ""


def test_cuda_libraries_are_read_from_tensorflows_own_and_cuda_extra():
    package = next((name for name in ("tensorflow", "tensorflow-cpu") if system._version(name)), None)
    if package is None:
        pytest.skip("TensorFlow is not installed")
    libraries = system._cuda_libraries(package)
    assert "nvidia-cudnn-cu12" in libraries and all(name.startswith("nvidia-") for name in libraries)


def test_this_machine_reports_its_real_build_without_a_fix_when_cpu_only():
    found = system.tensorflow_build([])
    assert found.build in {"cpu", "cuda"} and found.version and found.fix == ""


def test_home_page_says_the_cpu_build_on_a_gpu_machine_and_how_to_fix_it(monkeypatch):
    fake_packages(monkeypatch, {"tensorflow-cpu": "2.21.0", "keras": "3.15.1"})
    monkeypatch.setattr(system, "nvidia_gpus", lambda: ["NVIDIA H200"])
    monkeypatch.setattr(system, "tensorflow_is_cuda_build", lambda: False)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.warning) == 1
    assert "NVIDIA GPU but the CPU-only TensorFlow build" in at.warning[0].value
    assert "`make run TF_BUILD=cuda`" in at.warning[0].value and "rm .venv/.runtime" in at.warning[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Runs on"] == "CPU" and metrics["TensorFlow"] == "2.21.0"
    caption = " ".join(c.value for c in at.caption)
    assert "CPU-only build (tensorflow-cpu 2.21.0)" in caption and "trains on: CPU" in caption


def test_home_page_on_a_gpu_machine_with_the_cuda_build_has_nothing_to_fix(monkeypatch):
    fake_packages(monkeypatch, {"tensorflow": "2.21.0", "nvidia-cudnn-cu12": "9.3"}, ["nvidia-cudnn-cu12"])
    monkeypatch.setattr(system, "nvidia_gpus", lambda: ["NVIDIA H200"])
    monkeypatch.setattr(system, "tensorflow_is_cuda_build", lambda: True)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.warning
    assert {m.label: m.value for m in at.metric}["Runs on"] == "GPU"
    assert "trains on: 1 GPU: NVIDIA H200" in " ".join(c.value for c in at.caption)
