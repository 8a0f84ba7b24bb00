"""The notebook's learning-rate x weight-decay table as a feature: one frozen run per cell.

A grid is a set of queued runs named ``grid <n>: lr <lr>, wd <wd>`` (grids numbered 1, 2, ... in the
store); each cell's numbers come from its run's own config and store records, so the table fills in as
the queue works through it. In a class a grid is its learner's runs and counts against their waiting-run limit
as a whole: a grid that does not fit is refused before any of its cells is queued.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core import runs
from core.classroom import Learner
from core.config import RunConfig, format_log_step
from core.errors import ConfigError

PREFIX = "grid "


@dataclass(frozen=True)
class GridCell:
    learning_rate: float
    weight_decay: float
    run_id: str
    status: str
    val_accuracy: float | None


def launch_grid(
    base: RunConfig, learning_rates: list[float], weight_decays: list[float], learner: Learner | None = None
) -> str:
    """Queue one frozen run per (learning rate, weight decay) cell; returns the grid's id."""
    if base.model.regime != "frozen":
        raise ConfigError("The hyperparameter grid trains the frozen regime (backbone fixed, new head).")
    if not learning_rates or not weight_decays:
        raise ConfigError("Pick at least one learning rate and one weight decay for the grid.")
    if len(learning_rates) * len(weight_decays) > 36:
        raise ConfigError("A grid of more than 36 cells would take too long; pick fewer values.")
    cells = len(learning_rates) * len(weight_decays)
    room = runs.queue_room(learner)
    if room is not None and cells > room:
        raise ConfigError(
            f"This grid queues {cells} runs, and you may have only {room} more waiting in the class queue "
            "(the instructor's limit): pick fewer values, or wait until your waiting runs start."
        )
    grid_id = str(1 + max((int(i) for i in grid_ids() if i.isdigit() and len(i) < 6), default=0))
    configs = [
        base.replace(
            name=f"{PREFIX}{grid_id}: lr {format_log_step(lr)}, wd {wd:g}",
            train=base.train.replace(learning_rate=lr, weight_decay=wd),
        )
        for lr in sorted(learning_rates, reverse=True)
        for wd in sorted(weight_decays)
    ]
    for config in configs:
        runs.start_run(config, learner)
    return grid_id


def grid_ids(owner: str | None = None) -> list[str]:
    """Grids in the store (one learner's, in a class), newest first."""
    ids = []
    for record in runs.list_runs(owner=owner):
        if record.name.startswith(PREFIX) and ":" in record.name:
            grid_id = record.name[len(PREFIX) :].split(":", 1)[0]
            if grid_id not in ids:
                ids.append(grid_id)
    return ids


def grid_label(grid_id: str) -> str:
    """'Grid 2 · 6 cells · EfficientNet-Lite0 96 px · demo': what a grid trained, to tell grids apart."""
    members = [r for r in runs.list_runs() if r.name.startswith(f"{PREFIX}{grid_id}:")]
    if not members:
        return f"Grid {grid_id}"
    config = members[0].config
    return (
        f"Grid {grid_id} · {len(members)} cells · {config.model.backbone} "
        f"{config.model.effective_image_size} px · {config.data.summary()}"
    )


def grid_cells(grid_id: str) -> list[GridCell]:
    cells = []
    for record in runs.list_runs():
        if record.name.startswith(f"{PREFIX}{grid_id}:"):
            train = record.config.train
            cells.append(
                GridCell(
                    train.learning_rate, train.weight_decay or 0.0, record.id, record.status, record.best_val_accuracy
                )
            )
    return cells


def grid_table(cells: list[GridCell]) -> pd.DataFrame:
    """Rows: learning rate (largest first); columns: weight decay; values: best validation accuracy.
    Every header says what it is (a pivot's axis names do not show in a table)."""
    table = pd.DataFrame(
        [(c.learning_rate, c.weight_decay, c.val_accuracy) for c in cells],
        columns=["learning rate", "weight decay", "accuracy"],
    )
    if table.empty:
        return table
    pivot = table.pivot_table(
        index="learning rate", columns="weight decay", values="accuracy", aggfunc="max", dropna=False
    )
    pivot = pivot.reindex(index=sorted(pivot.index, reverse=True), columns=sorted(pivot.columns))
    pivot.index = [f"learning rate {format_log_step(lr)}" for lr in pivot.index]
    pivot.columns = [f"weight decay {wd:g}" for wd in pivot.columns]
    return pivot
