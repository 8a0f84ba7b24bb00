"""The notebook's learning-rate x weight-decay table as a feature: one frozen run per cell.

A grid is a set of queued runs whose names start with ``grid <id>:``; each cell's numbers come
from its run's own config and store records, so the table fills in as the queue works through it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from core import runs
from core.errors import ConfigError
from core.runs import RunConfig

PREFIX = "grid "


@dataclass(frozen=True)
class GridCell:
    learning_rate: float
    weight_decay: float
    run_id: str
    status: str
    val_accuracy: float | None


def launch_grid(base: RunConfig, learning_rates: list[float], weight_decays: list[float]) -> str:
    """Queue one frozen run per (learning rate, weight decay) cell; returns the grid's id."""
    if base.model.regime != "frozen":
        raise ConfigError("The hyperparameter grid trains the frozen regime (backbone fixed, new head).")
    if not learning_rates or not weight_decays:
        raise ConfigError("Pick at least one learning rate and one weight decay for the grid.")
    if len(learning_rates) * len(weight_decays) > 36:
        raise ConfigError("A grid of more than 36 cells would take too long; pick fewer values.")
    grid_id = time.strftime("%H%M%S")
    configs = [
        base.replace(name=f"{PREFIX}{grid_id}: lr {lr:g}, wd {wd:g}",
                     train=base.train.replace(learning_rate=lr, weight_decay=wd))
        for lr in sorted(learning_rates, reverse=True) for wd in sorted(weight_decays)
    ]
    for config in configs:
        runs.start_run(config)
    return grid_id


def grid_ids() -> list[str]:
    """Grids in the store, newest first."""
    ids = []
    for record in runs.list_runs():
        if record.name.startswith(PREFIX) and ":" in record.name:
            grid_id = record.name[len(PREFIX):].split(":", 1)[0]
            if grid_id not in ids:
                ids.append(grid_id)
    return ids


def grid_cells(grid_id: str) -> list[GridCell]:
    cells = []
    for record in runs.list_runs():
        if record.name.startswith(f"{PREFIX}{grid_id}:"):
            train = record.config.train
            cells.append(GridCell(train.learning_rate, train.weight_decay or 0.0, record.id, record.status,
                                  record.best_val_accuracy))
    return cells


def grid_table(cells: list[GridCell]) -> pd.DataFrame:
    """Rows: learning rate (largest first); columns: weight decay; values: best validation accuracy."""
    table = pd.DataFrame(
        [(f"{c.learning_rate:.0e}", f"{c.weight_decay:g}", c.val_accuracy) for c in cells],
        columns=["learning rate", "weight decay", "accuracy"],
    )
    if table.empty:
        return table
    pivot = table.pivot_table(index="learning rate", columns="weight decay", values="accuracy", aggfunc="max",
                              dropna=False)
    order = sorted(pivot.index, key=float, reverse=True)
    return pivot.reindex(index=order, columns=sorted(pivot.columns, key=float))
