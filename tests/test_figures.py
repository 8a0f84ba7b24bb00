"""Training charts: epochs are whole numbers, so the epoch axes tick on whole numbers only."""

from types import SimpleNamespace

import pytest

from core import figures


def epochs(count: int) -> list[SimpleNamespace]:
    """Epoch records as ``core.runs.EpochRecord`` carries them (1-based), with made-up metrics."""
    return [
        SimpleNamespace(
            epoch=e, accuracy=0.5, val_accuracy=0.4, top5_accuracy=0.9, val_top5_accuracy=0.8, loss=1.0, val_loss=1.2
        )
        for e in range(1, count + 1)
    ]


def epoch_axes(fig) -> list:
    axes = [fig.layout[name] for name in fig.layout if name.startswith("xaxis")]
    assert len(axes) == 2  # the accuracy panel and the loss panel
    return axes


def assert_whole_epoch_ticks(fig, last_epoch: int) -> None:
    for axis in epoch_axes(fig):
        assert axis.tickformat == "d"
        assert isinstance(axis.tick0, int) and isinstance(axis.dtick, int) and axis.dtick >= 1
        assert last_epoch / axis.dtick <= figures.MAX_EPOCH_TICKS


def test_a_short_run_ticks_every_epoch():
    fig = figures.training_curves(epochs(3))
    assert_whole_epoch_ticks(fig, 3)
    assert all(axis.dtick == 1 and axis.tick0 == 0 for axis in epoch_axes(fig))


def test_a_fine_tune_after_its_parent_ticks_on_whole_epochs():
    assert_whole_epoch_ticks(figures.training_curves(epochs(5), offset=30), 35)


def test_compared_runs_tick_on_whole_epochs_up_to_the_longest():
    fig = figures.compare_runs([("frozen", epochs(30), 0), ("fine-tune", epochs(40), 30)])
    assert_whole_epoch_ticks(fig, 70)
    assert {axis.dtick for axis in epoch_axes(fig)} == {10}


@pytest.mark.parametrize(
    "last_epoch, step",
    [(0, 1), (1, 1), (10, 1), (11, 2), (20, 2), (21, 5), (50, 5), (51, 10), (1000, 100), (1001, 200)],
)
def test_tick_step_is_a_round_whole_number(last_epoch, step):
    assert figures.epoch_tick_step(last_epoch) == step
