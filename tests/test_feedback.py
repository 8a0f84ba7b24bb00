"""The one progress callback the pages give core functions."""

from dashboard.feedback import progress_to


class Bar:
    def __init__(self):
        self.shown = []

    def progress(self, value, text=None):
        self.shown.append((value, text))


def test_progress_fills_the_bar_and_survives_a_zero_or_overshooting_total():
    bar = Bar()
    report = progress_to(bar)
    report(0, 0, "counting")
    report(1, 4, "one of four")
    report(5, 4, "done")
    assert bar.shown == [(0.0, "counting"), (0.25, "one of four"), (1.0, "done")]
