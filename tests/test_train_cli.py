"""``python -m core.training``: flags become a validated config; a run trains in the foreground into the store."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import demo, runs
from core.config import DataConfig, ModelConfig, RunConfig
from core.training.cli import FLAGS, build_config, parser

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "--image-size",
    "32",
    "--batch-size",
    "4",
    "--max-train-images",
    "32",
    "--max-test-images",
    "16",
    "--epochs",
    "1",
]


def cli(*args: str, home: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TRANSFER_LAB_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "core.training", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def demo_32(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("cli-demo-32")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(home))
        return demo.demo_folder(32)


def home_with_demo(home: Path, folder: Path) -> Path:
    (home / "datasets").mkdir(parents=True, exist_ok=True)
    (home / "datasets" / folder.name).symlink_to(folder, target_is_directory=True)
    return home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- flags


def test_help_documents_every_flag_without_loading_tensorflow(tmp_path):
    result = cli("--help", home=tmp_path)
    assert result.returncode == 0
    for flag in [*FLAGS, "augment", "name", "no_feature_cache"]:
        assert f"--{flag.replace('_', '-')}" in result.stdout
    check = subprocess.run(
        [sys.executable, "-c", "import sys, core.training.cli; print('tensorflow' in sys.modules)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.stdout.strip() == "False"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--epochs", "many"], "invalid int value"),
        (["--regime", "sideways"], "invalid choice"),
        (["--regime", "scratch", "--weights", "imagenet"], "random weights"),
        (["--regime", "finetune"], "Frozen run to fine-tune"),
        (["--parent", "no-such-run"], "no run 'no-such-run'"),
        (["--batch-size", "0"], "Batch size must be between 1"),
        (["--dataset", "ftp://somewhere"], "not understood"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(tmp_path, args, words):
    result = cli(*args, home=tmp_path, timeout=120)
    assert result.returncode == 2
    assert words in result.stderr
    assert not result.stdout.strip()


def _png(path: Path, shade: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), (shade, 90, 200 - shade)).save(path, format="PNG")


def _truncated_jpeg(path: Path) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[:700])  # the header reads; the data ends early


def _folder(tmp: Path, **classes) -> str:
    """``classes``: name -> what each holds ('good', 'fake', 'truncated' files, 3 of them, or 'empty')."""
    for name, kind in classes.items():
        (tmp / "photos" / name).mkdir(parents=True, exist_ok=True)
        for i in range(3 if kind != "empty" else 0):
            path = tmp / "photos" / name / f"{i}.{'png' if kind == 'good' else 'jpg'}"
            if kind == "good":
                _png(path, 40 * i)
            elif kind == "fake":
                path.write_text("a text file named like a photo")
            else:
                _truncated_jpeg(path)
    return f"folder:{tmp / 'photos'}"


def _hostile_pth(tmp: Path) -> str:
    import collections

    from test_backbones import EXPANDING, _legacy_file

    tensor, storage = EXPANDING["stride 0"]
    return str(_legacy_file(tmp / "tiny.pth", collections.OrderedDict(w=tensor), {"s0": storage}))


def _written(tmp: Path, name: str, content: bytes) -> str:
    (tmp / name).write_bytes(content)
    return str(tmp / name)


# name -> (flags made in a temporary folder, words the one line of error must hold)
MISTAKES = {
    "missing folder": (lambda tmp: ["--weights", "none", "--dataset", f"folder:{tmp / 'nope'}"], "does not exist"),
    "file as folder": (
        lambda tmp: ["--weights", "none", "--dataset", "folder:" + _written(tmp, "a.jpg", b"x")],
        "a.jpg is a file, not a folder",
    ),
    "misspelt TFDS name": (
        lambda tmp: ["--weights", "none", "--dataset", "tfds:stanford_dgos"],
        "Did you mean 'tfds:stanford_dogs'?",
    ),
    "missing weights": (lambda tmp: ["--weights", str(tmp / "absent.weights.h5")], "does not exist"),
    "text as weights": (
        lambda tmp: ["--weights", _written(tmp, "notes.txt", b"my notes")],
        "notes.txt is not a Keras weights file",
    ),
    "fake HDF5 weights": (
        lambda tmp: ["--weights", _written(tmp, "mine.weights.h5", b"not hdf5 at all")],
        "named like a Keras weights file but is not one",
    ),
    "hostile .pth": (
        lambda tmp: ["--backbone", "EfficientNet-Lite0 (offline ImageNet)", "--weights", _hostile_pth(tmp)],
        "more values than the file stores",
    ),
    "one class": (lambda tmp: ["--weights", "none", "--dataset", _folder(tmp, beagle="good")], "two sub-folders"),
    "no images": (
        lambda tmp: ["--weights", "none", "--dataset", _folder(tmp, a="empty", b="empty")],
        "'a' has no readable image",
    ),
    "only fake .jpg files": (
        lambda tmp: ["--weights", "none", "--dataset", _folder(tmp, a="fake", b="fake")],
        "'a' has no readable image (3 file(s) could not be read)",
    ),
    "only truncated JPEGs": (
        lambda tmp: ["--weights", "none", "--dataset", _folder(tmp, a="truncated", b="truncated")],
        "None of the 2 training images of 'a' can be decoded",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_mistakes_found_before_a_run_exit_2_with_one_line_and_no_run(transfer_lab_home, tmp_path, mistake):
    flags, words = MISTAKES[mistake]
    result = cli(*flags(tmp_path), "--image-size", "32", "--epochs", "1", home=transfer_lab_home, timeout=300)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("python -m core.training: error: ") and words in line, line
    assert not result.stdout.strip()
    assert runs.list_runs() == []
    assert not (transfer_lab_home / "datasets").exists() or not any((transfer_lab_home / "datasets").iterdir())


def test_flags_become_a_run_config():
    config = build_config(
        parser().parse_args(
            [
                "--dataset",
                "folder:/photos",
                "--regime",
                "scratch",
                "--backbone",
                "EfficientNetB2",
                "--epochs",
                "3",
                "--learning-rate",
                "0.01",
                "--augment",
                "strong",
                "--name",
                "big",
                "--max-train-images",
                "100",
            ]
        )
    )
    assert (config.data.source, config.data.max_train_images) == ("folder:/photos", 100)
    assert (config.model.backbone, config.model.regime, config.model.weights) == ("EfficientNetB2", "scratch", None)
    assert (config.train.epochs, config.train.learning_rate, config.train.batch_size) == (3, 0.01, None)
    assert config.train.mixed_precision == "auto"  # both left to the machine (32 and off on a CPU)
    assert config.name == "big" and config.augment.noise_on
    assert config.train.feature_cache  # the default
    assert not build_config(parser().parse_args(["--no-feature-cache"])).train.feature_cache
    assert build_config(parser().parse_args(["--cached-views", "3"])).train.cached_views == 3


def test_a_fine_tune_takes_its_parents_data_and_network_unless_told_otherwise():
    parent = RunConfig(
        data=DataConfig(source="demo", max_train_images=40),
        model=ModelConfig(regime="frozen", weights="none", image_size=64),
    )
    parent_id = runs.create_run(parent)
    (runs.run_folder(parent_id) / runs.LAST_MODEL).write_bytes(b"model")
    runs.finish_run(parent_id, runs.COMPLETED)
    config = build_config(parser().parse_args(["--parent", parent_id, "--epochs", "2", "--unfreeze-from-block", "6"]))
    assert (config.model.regime, config.model.parent_run_id, config.model.image_size) == ("finetune", parent_id, 64)
    assert config.data == parent.data and config.model.unfreeze_from_block == 6
    assert config.train.epochs == 2 and config.train.learning_rate is None  # the regime's 1e-5


# ---------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_a_scratch_run_trains_end_to_end_and_prints_its_result_last(tmp_path, demo_32):
    home = home_with_demo(tmp_path / "home", demo_32)
    result = cli("--dataset", "demo", "--regime", "scratch", "--augment", "none", "--name", "cli", *QUICK, home=home)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = last_json(result.stdout)
    assert summary["status"] == "completed"
    assert "epoch 1/1: loss" in result.stdout
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(home))
        record = runs.get_run(summary["run_id"])
        (epoch,) = runs.epochs(record.id)
    assert (record.name, record.regime, record.status, record.launcher) == ("cli", "scratch", "completed", "foreground")
    assert {name: summary[name] for name in runs.METRICS} == epoch.metrics()
    assert record.trainable_params > 0.98 * record.total_params


@pytest.mark.slow
def test_data_warnings_are_printed_before_training_like_the_data_page_shows_them(transfer_lab_home, tmp_path):
    source = _folder(tmp_path, cat="good", dog="good")
    (tmp_path / "photos" / "dog" / "note.jpg").write_text("not a photo")
    result = cli(
        "--dataset",
        source,
        "--regime",
        "scratch",
        "--augment",
        "none",
        "--image-size",
        "32",
        "--batch-size",
        "2",
        "--epochs",
        "1",
        home=transfer_lab_home,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "python -m core.training: warning: 1 file(s) could not be read as images and were skipped."
        in result.stderr.splitlines()
    )
    assert last_json(result.stdout)["status"] == "completed"


@pytest.mark.slow
def test_two_cpu_workers_train_one_epoch_with_multi_worker_mirrored_strategy(tmp_path, demo_32):
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    homes = [home_with_demo(tmp_path / f"worker{i}", demo_32) for i in range(2)]
    workers = []
    for index, home in enumerate(homes):
        env = {
            **os.environ,
            "TRANSFER_LAB_HOME": str(home),
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "core.training",
                    "--regime",
                    "frozen",
                    "--weights",
                    "none",
                    "--augment",
                    "none",
                    "--no-feature-cache",
                    *QUICK,
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=600))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    chief, other = (last_json(stdout) for stdout, _ in outputs)
    assert chief["status"] == other["status"] == "completed"
    assert chief["run_id"] and other["run_id"] is None  # only the chief records
    for name in runs.METRICS:
        assert np.isclose(chief[name], other[name])  # the workers trained one model together
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFER_LAB_HOME", str(homes[0]))
        record = runs.get_run(chief["run_id"])
        assert len(runs.epochs(record.id)) == 1
        assert record.last_model is not None
    assert "2 workers" in record.device
