"""What a training path supplies to the run skeleton (``engine.train``), and what every path shares.

A path is one way of fitting a run's model: ``ImagePath`` (every image through the whole network every
epoch) or ``CachedFeaturePath`` (a frozen run's head on backbone features extracted once). The skeleton
owns everything else (the strategy scope, the callbacks, checkpoints, the recorder, TensorBoard, stop
checks, resuming and the outcome) and asks the path, in this order:

    build(num_classes, done, jit_compile)  inside the strategy scope: the models (``Models``)
    prepare(splits, done)                  the data every epoch shares (``Fitting``)
    segments(done, epochs)                 runs of consecutive epochs, one ``fit`` each
    training_data(start, stop)             the training data of one segment

``prepare`` and ``training_data`` may raise ``StopRequested`` (a stop arrived while they prepared data): the
run then ends as stopped, with the epochs it recorded so far.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core import runs
from core.errors import ConfigError, RunError
from core.models import load_saved_model
from core.progress import Progress

if TYPE_CHECKING:
    from core.config import RunConfig
    from core.data import Splits


class StopRequested(Exception):
    """A stop request arrived while a path prepared data (before ``fit`` could see it)."""


@dataclass(frozen=True)
class Models:
    """What a path built: ``saved`` is what checkpoints hold and the run's parameter counts describe (the
    whole network); ``fitted`` is what ``fit`` trains (the same model, or only its head)."""

    saved: Any
    fitted: Any
    unfrozen: list[str] | None = None  # the layers a fine-tune unfroze now (None when not fine-tuning now)


@dataclass(frozen=True)
class Fitting:
    """What every segment's ``fit`` shares."""

    test: Any  # the validation data
    num_train: int  # training images per epoch
    steps_per_epoch: int | None = None  # None: an epoch ends when its training data does


class TrainingPath(ABC):
    """One way of fitting a run's model; see the module docstring for the order of the calls."""

    device_note = ""  # appended to the device the run records ("CPU, cached features")

    def __init__(self, config: RunConfig, run_id: str | None, progress: Progress | None = None):
        self.config = config
        self.run_id = run_id  # None: a non-chief worker, which records nothing
        self.progress = progress

    def note(self, phase: str, epoch: int | None = None) -> None:
        """Show ``phase`` (before the 1-based ``epoch``, when given) as the run's live progress, for a stored run,
        with no batches counted yet: the last phase's count read as this one's ("Extracting features · batch
        16/16", the validation's count, while the next view's extraction had not started)."""
        if self.run_id:
            runs.record_progress(self.run_id, phase=phase, epoch=epoch, batch=0, batches=0)

    @abstractmethod
    def build(self, num_classes: int, done: int, jit_compile: bool | str) -> Models:
        """The compiled models; ``done`` epochs were already trained (resume from the last checkpoint)."""

    @abstractmethod
    def prepare(self, splits: Splits, done: int) -> Fitting:
        """The data the first segment and every validation need."""

    def segments(self, done: int, epochs: int) -> Iterable[tuple[int, int]]:
        """(start, stop) epoch ranges, one ``fit`` each: by default one for the whole run."""
        return [(done, epochs)]

    @abstractmethod
    def training_data(self, start: int, stop: int) -> Any:
        """The training data ``fit`` reads for epochs ``start``..``stop - 1``."""


def check_classes(model: Any, num_classes: int, source: str) -> None:
    """Refuse a saved model whose output does not fit the data's classes."""
    outputs = model.output_shape[-1]
    if outputs != num_classes:
        raise ConfigError(
            f"{source} predicts {outputs} classes but this data has {num_classes}: use the same "
            "data source as the run it continues."
        )


def resumed_model(run_id: str, done: int, num_classes: int) -> Any:
    """The compiled model a run saved after its last recorded epoch (``done``), to continue from."""
    record = runs.get_run(run_id)
    if record.last_model is None:
        raise RunError(
            f"“{record.name}” recorded {done} epoch(s) but its model_last.keras is gone, so it cannot "
            "resume. Start a new run."
        )
    model = load_saved_model(record.last_model, compile=True)
    check_classes(model, num_classes, f"The saved model of “{record.name}”")
    return model
