"""The Explore page through AppTest, on a small subset of the demo set at 32 px.

AppTest cannot drag a lasso, so the selection is driven through the path the Evaluate page uses (the test images
it sends to the map, in session state); the lasso's own path (a Streamlit selection to map rows) is unit-tested
in tests/test_explore.py.
"""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import data
from core.config import DataConfig
from dashboard.state import DATA_CONFIG, MAP_HIGHLIGHT

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
SMALL_DEMO = DataConfig(source="demo", max_train_images=36, max_test_images=18)


@pytest.fixture
def at(demo_32_linked) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=180)
    app.session_state[DATA_CONFIG] = SMALL_DEMO
    app.session_state["explore_image_size"] = 32
    app.run()
    app.switch_page("app_pages/explore.py").run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def test_the_map_renders_with_its_separability_and_selected_images_show_as_thumbnails(at):
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 1
    knn = [m for m in at.metric if m.label.startswith("kNN accuracy")]
    assert len(knn) == 1 and knn[0].value.endswith("%")
    assert not at.get("image")  # nothing selected yet

    at.session_state[MAP_HIGHLIGHT] = (None, (0, 1, 2))  # what Evaluate's "See them on the Explore map" sends
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(h.value == "3 selected image(s)" for h in at.subheader)
    # three thumbnails, the first one up close, and its six nearest training images
    assert len(at.get("image")) == 3 + 1 + 6
    sent = [path.name for path, _ in data.image_files(SMALL_DEMO, 32).test[:3]]  # test images 0, 1 and 2
    assert [option.rsplit(" · ", 1)[-1] for option in at.selectbox(key="explore_point").options] == sent


def test_evaluate_sends_its_top_losses_to_the_map_with_the_runs_mistakes(demo_32_linked, tiny_run):
    run_id = tiny_run(demo_32_linked, name="tiny frozen", test_images=18)
    app = AppTest.from_file(APP, default_timeout=180)
    app.session_state["explore_image_size"] = 32
    app.run()
    app.switch_page("app_pages/evaluate.py").run()
    app.button(key="evaluate_losses_map").click().run()  # "See them on the Explore map"
    assert not app.exception, [e.message for e in app.exception]
    assert app.session_state[MAP_HIGHLIGHT][0] == run_id
    assert app.selectbox(key="explore_run").value == run_id
    assert any("12 test image(s) sent from the Evaluate page" in i.value for i in app.info)
    assert any(h.value == "12 selected image(s)" for h in app.subheader)
    figure = app.get("plotly_chart")[0].proto.spec
    assert "sent from Evaluate" in figure  # the twelve starred
    assert "misclassified by the run" in figure  # a 1-epoch run on 32 px gets some wrong: ringed in red
