"""The Evaluate page through AppTest, on a tiny run trained in this process."""

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core.predictions
from core import evaluation
from core.predictions import cache_path_for, run_model_path, run_predictions

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory, tiny_run):
    """A data directory holding one finished 1-epoch run on 27 demo test images."""
    home = tmp_path_factory.mktemp("evaluate-home")
    return home, tiny_run(home, name="tiny frozen", test_images=27)


@pytest.fixture
def at(trained_home, monkeypatch) -> AppTest:
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(trained_home[0]))
    app = AppTest.from_file(APP, default_timeout=180)
    app.run()
    app.switch_page("app_pages/evaluate.py").run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def test_metric_tiles_match_the_core_metrics(at, trained_home):
    home, run_id = trained_home
    expected = evaluation.compute_metrics(run_predictions(run_id)).headline()
    shown = {m.label: m.value for m in at.metric}
    assert list(shown) == list(expected)
    for label, value in expected.items():
        assert shown[label] == f"{value:.3f}"
    assert "27 test images" in at.caption[0].value


def test_per_class_table_heatmap_and_top_losses_render(at):
    assert len(at.dataframe) == 2  # per-class table and most-confused list
    assert any(element.type == "plotly_chart" for element in at.get("plotly_chart"))
    assert len(at.get("image")) == 12  # the top-losses gallery


def test_predictions_are_cached_next_to_the_model(at, trained_home, monkeypatch):
    home, run_id = trained_home
    cache = cache_path_for(run_model_path(run_id))
    assert cache.is_file()

    def no_model(*args, **kwargs):
        raise AssertionError("the cached predictions should have been used")

    monkeypatch.setattr(core.predictions, "load_saved_model", no_model)
    at.run()
    assert not at.exception


def test_a_run_without_a_saved_model_is_not_offered(trained_home, monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(tmp_path))
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    app.switch_page("app_pages/evaluate.py").run()
    assert not app.exception
    assert "No run has a saved model yet" in app.info[0].value


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory, tiny_run):
    """Two runs tested on the same 27 demo images, and one tested on 18 of them."""
    home = tmp_path_factory.mktemp("compare-home")
    return (
        home,
        tiny_run(home, name="frozen on 27", test_images=27),
        tiny_run(home, name="frozen again on 27", test_images=27),
        tiny_run(home, name="frozen on 18", test_images=18),
    )


def test_compare_offers_only_runs_tested_on_the_same_images_with_readable_labels(three_runs, monkeypatch):
    home, first, second, _ = three_runs
    monkeypatch.setenv("TRANSFER_LAB_HOME", str(home))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("app_pages/evaluate.py").run()
    at.selectbox(key="evaluate_run").set_value(first).run()
    assert not at.exception
    versus = at.selectbox(key="evaluate_versus")
    assert len(versus.options) == 2 and versus.options[0] == "(none)"  # the 18-image run is not offered
    assert re.fullmatch(r"frozen again on 27 · \d\d [A-Z][a-z]{2} \d\d:\d\d:\d\d", versus.options[1])
    assert any("1 other run(s) were tested on other images" in c.value for c in at.caption)
    assert not any(m.proto.delta for m in at.metric)

    versus.set_value(second).run()
    assert not at.exception and not at.error
    ours = evaluation.compute_metrics(run_predictions(first))
    theirs = evaluation.compute_metrics(run_predictions(second))
    expected = {d.metric: f"{d.delta:+.3f}" for d in evaluation.compare(theirs, ours)}
    assert {m.label: m.proto.delta for m in at.metric} == expected  # just the number: nothing to cut
    assert any(
        "this run minus **frozen again on 27 · " in c.value and "same 27 test images" in c.value for c in at.caption
    )
