"""Classroom mode in core: learners' names, who owns which run and dataset, the round-robin queue, the class's
limits. No TensorFlow: workers are stood in for by sleeping processes (``sleepers`` from test_runs)."""

import sqlite3
import stat

import pytest

from core import class_board, classroom, datasets, grid, runs
from core.classroom import ClassLimits, Learner
from core.errors import ConfigError, RunError
from core.runs.fairness import Waiting, round_robin
from test_runs import config, sleepers  # noqa: F401  (a fixture)

ADA, BEN = Learner("Ada"), Learner("Ben")
TEACHER = Learner("Ms Hopper", instructor=True)


def test_a_learner_name_is_tidied_and_a_bad_one_is_refused_in_words():
    assert classroom.learner_name("  Table   3 ") == "Table 3"
    assert classroom.learner_name("Zoë O'Neil") == "Zoë O'Neil"
    for bad, words in [("", "Type the name"), ("x" * 25, "24 characters"), ("<script>", "letters, digits")]:
        with pytest.raises(ConfigError, match=words):
            classroom.learner_name(bad)
    assert Learner("Ada").owns("ada") and not Learner("Ada").owns(None) and not Learner("Ada").owns("Ben")


def test_classroom_mode_is_off_unless_the_setting_turns_it_on(monkeypatch):
    monkeypatch.delenv(classroom.CLASSROOM_ENV, raising=False)
    assert not classroom.enabled()
    monkeypatch.setenv(classroom.CLASSROOM_ENV, "1")
    assert classroom.enabled()


def test_round_robin_alternates_learners_and_keeps_each_learners_order():
    waiting = [Waiting("a1", "Ada", 1), Waiting("a2", "ada", 2), Waiting("a3", "Ada", 3), Waiting("b1", "Ben", 4)]
    assert round_robin(waiting, {}) == ["a1", "b1", "a2", "a3"]
    # Ada's last run started after Ben's: Ben goes first, however early Ada queued.
    assert round_robin(waiting, {"ada": 50.0, "ben": 10.0}) == ["b1", "a1", "a2", "a3"]
    # Outside a class every run belongs to '': first come, first served.
    assert round_robin([Waiting("x", "", 2), Waiting("y", "", 1)], {}) == ["x", "y"]


def test_the_queue_starts_two_learners_runs_round_robin(sleepers):  # noqa: F811
    first = runs.start_run(config(), ADA)  # starts at once: nothing else trains
    ada_waiting = [runs.create_run(config(), learner=ADA) for _ in range(2)]
    ben = runs.create_run(config(), learner=BEN)
    assert runs.get_run(first).status == runs.RUNNING
    assert [r.id for r in runs.queue()] == [ben, *ada_waiting]  # Ben queued last but goes next
    assert runs.progress(ben).queue_position == 1 and runs.progress(ada_waiting[1]).queue_position == 3
    order = []
    running = first
    for _ in range(3):
        runs.finish_run(running, runs.COMPLETED)
        running = runs.kick_queue()
        order.append(running)
    assert order == [ben, *ada_waiting]


def test_each_learner_sees_their_own_runs_and_the_class_sees_all(sleepers):  # noqa: F811
    ada = runs.create_run(config(), learner=ADA)
    ben = runs.create_run(config(), learner=BEN)
    alone = runs.create_run(config())
    assert [r.id for r in runs.list_runs(owner="ADA")] == [ada]
    assert [r.id for r in runs.list_runs(owner="Ben")] == [ben]
    assert {r.id for r in runs.list_runs()} == {ada, ben, alone}
    assert runs.get_run(ada).owner == "Ada" and runs.get_run(alone).owner is None


def test_a_learner_cannot_stop_resume_or_delete_anothers_run_and_the_instructor_can(sleepers):  # noqa: F811
    ada = runs.create_run(config(), learner=ADA)
    for action in (runs.request_stop, runs.delete_run, runs.resume_run):
        with pytest.raises(RunError, match="Ada's run: only they or the instructor"):
            action(ada, BEN)
    assert runs.request_stop(ada, TEACHER) == runs.STOPPED
    runs.delete_run(ada, TEACHER)
    assert runs.list_runs() == []


def test_the_class_limits_refuse_an_over_limit_launch_in_words_and_spare_the_instructor(sleepers):  # noqa: F811
    classroom.set_limits(ClassLimits(max_queued_per_learner=1, max_image_size=64, max_epochs=3))
    assert classroom.limits() == ClassLimits(max_queued_per_learner=1, max_image_size=64, max_epochs=3)
    with pytest.raises(ConfigError, match="at most 64 px .* this one would use 96 px"):
        runs.create_run(config(image_size=96), learner=ADA)
    with pytest.raises(ConfigError, match="at most 3 epoch"):
        runs.create_run(config().replace(train=config().train.replace(epochs=5)), learner=ADA)
    runs.create_run(config(), learner=ADA)
    assert runs.queue_room(ADA) == 0 and runs.queue_room(BEN) == 1 and runs.queue_room(TEACHER) is None
    with pytest.raises(ConfigError, match="already have 1 run.* waiting .* most the instructor allows"):
        runs.create_run(config(), learner=ADA)
    runs.create_run(config(), learner=BEN)  # the limit is per learner
    for _ in range(3):
        runs.create_run(config(image_size=128), learner=TEACHER)  # the instructor's demos are not limited
    assert len(runs.queue()) == 5


def test_a_grid_that_does_not_fit_the_limit_queues_nothing(sleepers):  # noqa: F811
    classroom.set_limits(ClassLimits(max_queued_per_learner=3))
    with pytest.raises(ConfigError, match="queues 4 runs, and you may have only 3 more"):
        grid.launch_grid(config(), [1e-2, 1e-3], [0.0, 0.01], ADA)
    assert runs.list_runs() == []
    grid_id = grid.launch_grid(config(), [1e-2], [0.0, 0.01], ADA)
    assert grid.grid_ids(owner="Ada") == [grid_id] and grid.grid_ids(owner="Ben") == []


def test_limits_and_the_instructor_code_are_kept_in_the_data_directory(transfer_lab_home):
    assert classroom.limits() == ClassLimits()  # none set yet
    code = classroom.instructor_code()
    assert classroom.instructor_code() == code and classroom.is_instructor_code(f" {code.upper()} ")
    assert not classroom.is_instructor_code("wrong") and not classroom.is_instructor_code(None)
    path = transfer_lab_home / classroom.SETTINGS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the code
    path.write_text("{ not json")
    assert classroom.limits() == ClassLimits()  # a damaged file falls back to the defaults
    with pytest.raises(ConfigError, match="Runs waiting per learner must be between 1 and 36"):
        ClassLimits(max_queued_per_learner=0)


def test_a_store_made_before_classes_gains_the_owner_column(transfer_lab_home):
    old = sqlite3.connect(transfer_lab_home / "runs.sqlite")
    schema = runs.store.SCHEMA.replace(",\n    owner TEXT\n", "\n")
    assert "owner" not in schema.split("CREATE TABLE IF NOT EXISTS epochs")[0]
    old.executescript(schema)
    old.execute(
        "INSERT INTO runs (id, name, regime, backbone, config, status, launcher, created_at, epochs_planned) "
        "VALUES ('old', 'old run', 'frozen', 'lite0', ?, 'completed', 'background', 1, 3)",
        (config().to_json(),),
    )
    old.commit()
    old.close()
    runs.store._ready.clear()  # a new app process: the store is set up again on first open
    assert runs.get_run("old").owner is None
    assert runs.list_runs(owner="Ada") == []
    runs.create_run(config(), learner=ADA)
    assert [r.owner for r in runs.list_runs()][0] == "Ada"


def test_datasets_belong_to_the_learner_who_made_them():
    datasets.create_dataset("ada dogs", ["beagle", "pug"], owner="Ada")
    datasets.create_dataset("shared", ["a", "b"])
    assert [s.name for s in datasets.list_datasets(owner="ada")] == ["ada dogs"]
    assert [s.name for s in datasets.list_datasets()] == ["ada dogs", "shared"]
    assert datasets.summary("ada dogs").owner == "Ada" and datasets.summary("ada dogs").class_names == ["beagle", "pug"]


def test_the_command_line_prints_the_code_and_sets_limits(capsys):
    assert classroom.main(["--max-image-size", "128", "--max-queued", "3"]) == 0
    out = capsys.readouterr().out
    assert f"Instructor code: {classroom.instructor_code()}" in out and "3 waiting run(s) per learner" in out
    assert classroom.limits() == ClassLimits(max_queued_per_learner=3, max_image_size=128)
    assert classroom.main(["--max-epochs", "many"]) == 2
    assert "Most epochs per run must be a number" in capsys.readouterr().out
    assert classroom.main(["--max-image-size", "none"]) == 0 and classroom.limits().max_image_size is None


def test_the_board_has_one_row_per_learner_with_their_best_run_best_first():
    ada_weak, ada_strong = (runs.create_run(config(), learner=ADA) for _ in range(2))
    ben = runs.create_run(config(), learner=BEN)
    newcomer = runs.create_run(config(), learner=Learner("Cy"))
    for run_id, accuracy in ((ada_weak, 0.4), (ada_strong, 0.7), (ben, 0.9)):
        runs.record_epoch(run_id, 1, {"val_accuracy": accuracy})
    rows = class_board.learner_rows()
    assert [(row.learner, row.best.id) for row in rows] == [("Ben", ben), ("Ada", ada_strong), ("Cy", newcomer)]
    assert [row.runs_made for row in rows] == [1, 2, 1] and rows[1].active == 2
    assert "32 px · 3 epochs · lr" in rows[0].settings
