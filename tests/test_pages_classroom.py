"""Classroom mode through AppTest: joining with a name, each learner's own runs and the whole class's, the round-robin
queue and the limits on the pages, the instructor's board. No run trains: a stand-in "running" run (this test's
own process) holds the queue, so queued runs stay queued while the pages are looked at."""

import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import classroom, datasets, runs
from core.classroom import ClassLimits, Learner
from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TINY = DataConfig(source="demo", max_train_images=36, max_test_images=18)
ADA, BEN = Learner("Ada"), Learner("Ben")


@pytest.fixture(autouse=True)
def in_class(monkeypatch):
    monkeypatch.setenv(classroom.CLASSROOM_ENV, "1")


def config(name: str, size: int = 32) -> RunConfig:
    return RunConfig(
        name=name,
        data=TINY,
        model=ModelConfig(regime="frozen", weights="none", image_size=size),
        train=TrainConfig(epochs=1, batch_size=12),
    )


def finished(name: str, learner: Learner) -> str:
    """A run that trained and completed (no epochs recorded: nothing here needs its curves)."""
    run_id = runs.create_run(config(name), learner=learner)
    with runs.connect() as db:
        db.execute("UPDATE runs SET started_at = ? WHERE id = ?", (time.time(), run_id))
    runs.finish_run(run_id, runs.COMPLETED)
    return run_id


def hold_the_queue() -> str:
    """A run marked running by this (living) test process: nothing else starts while it 'trains'."""
    run_id = runs.create_run(config("the demo"), learner=Learner("Ms Hopper", instructor=True))
    with runs.connect() as db:
        db.execute("UPDATE runs SET status = 'running', pid = ?, started_at = 1 WHERE id = ?", (os.getpid(), run_id))
    return run_id


def open_page(page: str, learner: Learner | None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if learner is not None:
        at.session_state["shared.learner"] = learner
    at.session_state["shared.data_config"] = TINY
    at.switch_page(page).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def run_names(at: AppTest) -> set[str]:
    return {label.split(" · ")[0] for label in at.dataframe[0].value["run"]}


def test_a_browser_joins_with_a_name_kept_in_the_url_and_a_wrong_code_is_refused():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert at.title[0].value == "Join the class"
    at.text_input(key="class_join_name").set_value("Ada")
    at.text_input(key="class_join_code").set_value("not-the-code")
    at.button(key="FormSubmitter:class_join-Join").click().run()
    assert "not this class's instructor code" in at.error[0].value
    at.text_input(key="class_join_code").set_value("")
    at.button(key="FormSubmitter:class_join-Join").click().run()
    assert not at.exception and at.query_params["learner"] in ("Ada", ["Ada"])
    assert any("In class as **Ada** (learner)" in c.value for c in at.sidebar.caption)

    refreshed = AppTest.from_file(APP, default_timeout=120)  # a refresh: a new session, the same URL
    refreshed.query_params["learner"] = "Ada"
    refreshed.run()
    assert refreshed.session_state["shared.learner"] == ADA and refreshed.title[0].value != "Join the class"

    teacher = AppTest.from_file(APP, default_timeout=120)
    teacher.query_params.update({"learner": "Ms Hopper", "code": classroom.instructor_code()})
    teacher.run()
    assert teacher.session_state["shared.learner"].instructor


def test_outside_a_class_nobody_is_asked_for_a_name_and_there_is_no_board(monkeypatch):
    monkeypatch.delenv(classroom.CLASSROOM_ENV)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception and at.title[0].value != "Join the class"
    assert not at.sidebar.caption or not any("In class as" in c.value for c in at.sidebar.caption)


def test_two_learners_see_their_own_runs_and_both_in_the_whole_class_view():
    finished("ada's run", ADA)
    finished("ben's run", BEN)
    for learner, mine in ((ADA, "ada's run"), (BEN, "ben's run")):
        at = open_page("app_pages/train.py", learner)
        assert run_names(at) == {mine}
        at.segmented_control(key="train_scope").set_value("Whole class").run()
        assert run_names(at) == {"ada's run", "ben's run"}
        assert set(at.dataframe[0].value["learner"]) == {"Ada", "Ben"}
    evaluate = open_page("app_pages/evaluate.py", ADA)  # no saved models: nothing of Ben's offered either
    assert not evaluate.exception


def test_a_learner_cannot_stop_anothers_run_from_the_train_page_and_the_instructor_can_from_the_board():
    hold_the_queue()
    ben = runs.create_run(config("ben's waiting run"), learner=BEN)
    at = open_page("app_pages/train.py", ADA)
    at.session_state["shared.watched_run"] = ben
    at.run()
    assert not [b for b in at.button if b.key == "train_stop"]  # Ben's run: no Stop for Ada
    assert any("Ben's run" in m.value for m in at.markdown)

    board = open_page("app_pages/board.py", Learner("Ms Hopper", instructor=True))
    board.selectbox(key="board_run").set_value(ben).run()
    board.button(key="board_stop").click().run()
    assert not board.exception and runs.get_run(ben).status == runs.STOPPED

    learner_board = open_page("app_pages/board.py", ADA)
    assert not [b for b in learner_board.button if b.key in ("board_stop", "board_delete")]


def test_the_board_shows_each_learners_best_run_and_the_queue_in_round_robin_order():
    finished("ada's first", ADA)
    hold_the_queue()
    ada_waiting = [runs.create_run(config(f"ada {n}"), learner=ADA) for n in (1, 2)]
    ben_waiting = runs.create_run(config("ben 1"), learner=BEN)
    board = open_page("app_pages/board.py", ADA)
    standings, queue = board.dataframe[0].value, board.dataframe[1].value
    assert set(standings["learner"]) == {"Ada", "Ben", "Ms Hopper"}
    assert list(queue["run"]) == ["the demo", "ben 1", "ada 1", "ada 2"]  # training, then Ben before Ada's second
    assert list(queue[""]) == ["training", "1.", "2.", "3."]
    assert runs.progress(ben_waiting).queue_position == 1 and runs.progress(ada_waiting[0]).queue_position == 2


def test_an_over_limit_launch_is_refused_with_the_limit_named_and_the_instructor_sets_limits_on_the_board():
    hold_the_queue()
    teacher = open_page("app_pages/board.py", Learner("Ms Hopper", instructor=True))
    teacher.slider(key="board_max_queued_per_learner").set_value(1)
    teacher.number_input(key="board_max_image_size").set_value(64)
    teacher.button(key="FormSubmitter:board_limits_form-Save the limits").click().run()
    assert not teacher.exception and classroom.limits() == ClassLimits(max_queued_per_learner=1, max_image_size=64)

    at = open_page("app_pages/train.py", ADA)
    at.number_input(key="train_frozen_size").set_value(96)
    at.number_input(key="train_frozen_epochs").set_value(1)
    at.selectbox(key="train_frozen_weights").set_value("none")
    at.button(key="FormSubmitter:train_frozen_form-Launch").click().run()
    assert any("at most 64 px (the instructor's limit)" in e.value for e in at.error), [e.value for e in at.error]
    at.number_input(key="train_frozen_size").set_value(32)
    at.button(key="FormSubmitter:train_frozen_form-Launch").click().run()
    assert not at.error and [r.owner for r in runs.queue()] == ["Ada"]
    at.button(key="FormSubmitter:train_frozen_form-Launch").click().run()
    assert any("most the instructor allows (1)" in e.value for e in at.error), [e.value for e in at.error]
    assert len(runs.queue()) == 1


def test_a_dataset_belongs_to_the_learner_who_made_it_and_the_class_may_look_but_not_change_it():
    at = open_page("app_pages/data.py", ADA)
    at.radio(key="data_source").set_value("My datasets (made here)").run()
    at.text_input(key="data_create_name").input("ada dogs")
    at.text_area(key="data_create_classes").input("beagle, pug")
    next(b for b in at.button if b.label == "Create").click().run()
    assert not at.exception and not at.error and datasets.summary("ada dogs").owner == "Ada"
    assert any(b.label == "Add" or "Add" in b.label for b in at.button)  # Ada's own: she can add photos

    ben = open_page("app_pages/data.py", BEN)
    ben.radio(key="data_source").set_value("My datasets (made here)").run()
    assert "Create a dataset" in [h.value for h in ben.subheader]  # none of Ben's own yet
    ben.segmented_control(key="data_scope").set_value("Whole class").run()
    assert ben.selectbox(key="data_local_name").value == "ada dogs"
    assert any("is Ada's dataset" in i.value and "train on it" in i.value for i in ben.info)
    assert not [b for b in ben.button if "Add" in b.label or "Delete" in b.label]
