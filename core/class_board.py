"""The instructor's board: every learner's best run in one table, so a class's thirty experiments read as one
comparison, and the class queue in the order it will train.

A learner's best run is the one with the highest best validation accuracy; a learner with no finished epoch yet
shows their newest run, so everyone who launched something has a row.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import runs
from core.runs.fairness import owner_key


@dataclass(frozen=True)
class LearnerRow:
    """One learner on the board."""

    learner: str  # '' for runs made outside the class (the CLI, before classroom mode)
    best: runs.RunRecord
    runs_made: int
    active: int  # queued or running

    @property
    def settings(self) -> str:
        """What the run trained with, in one line: what learners compare."""
        config = self.best.config
        epochs = config.effective_epochs
        return (
            f"{config.model.backbone} · {config.model.effective_image_size} px · {epochs} epoch{'s' * (epochs != 1)} · "
            f"lr {config.effective_learning_rate:g} · augmentation {config.augment.matching_preset() or 'custom'}"
        )


def learner_rows() -> list[LearnerRow]:
    """One row per learner, the best first (learners without a finished epoch last, by name)."""
    by_learner: dict[str, list[runs.RunRecord]] = {}
    for record in runs.list_runs():
        by_learner.setdefault(owner_key(record.owner), []).append(record)
    rows = []
    for records in by_learner.values():
        scored = [r for r in records if r.best_val_accuracy is not None]
        best = max(scored, key=lambda r: r.best_val_accuracy) if scored else records[0]  # newest first
        active = sum(r.is_active for r in records)
        rows.append(LearnerRow(best.owner or "", best, len(records), active))
    return sorted(
        rows,
        key=lambda row: (row.best.best_val_accuracy is None, -(row.best.best_val_accuracy or 0), row.learner.lower()),
    )
