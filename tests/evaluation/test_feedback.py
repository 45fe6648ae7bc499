"""A replay's feedback: which baseline and series of a feedback file the replayed series is."""

from __future__ import annotations

import numpy as np
import pytest

from smartmetrics.engine.alerts import AlertRecord
from smartmetrics.engine.series import Series, labels_key
from smartmetrics.evaluation.feedback import pick_feedback


def said(baseline: str, labels: dict[str, str], feedback: str | None = "noise", i: int = 0) -> AlertRecord:
    return AlertRecord(f"{baseline}{i}{feedback}", baseline, "f", labels, labels_key(labels), 100.0 + i,
                       side="above", feedback=feedback)


def series(**labels: str) -> Series:
    return Series(labels, np.arange(3) * 60, np.zeros(3), 60)


def test_the_series_with_the_same_labels_is_picked_and_its_feedback_counted() -> None:
    api, web = {"job": "api"}, {"job": "web"}
    records = [said("qps", api), said("qps", api, "real", 1), said("qps", api, None, 2), said("qps", web)]
    chosen = pick_feedback(records, series(job="api"), None)
    assert (chosen.baseline, chosen.series, chosen.noise, chosen.real) == ("qps", labels_key(api), 1, 1)
    assert chosen.widen(records)(1000.0) == {}  # a real alert on that side: never absorbed
    assert pick_feedback([said("qps", web)], series(job="web"), "qps").widen([said("qps", web)])(1000.0)


def test_a_series_without_labels_takes_the_files_only_series() -> None:
    only = [said("qps", {"job": "api"}, i=i) for i in range(2)]
    assert pick_feedback(only, series(), None).noise == 2
    with pytest.raises(ValueError, match="2 series"):
        pick_feedback([*only, said("qps", {"job": "web"})], series(), None)


@pytest.mark.parametrize("records, baseline, why", [
    ([said("qps", {}), said("lat", {})], None, "2 baselines .lat, qps.; choose one with --baseline"),
    ([said("qps", {})], "lat", "no feedback on baseline 'lat'"),
    ([said("qps", {}, None)], None, "0 baselines"),
    ([said("qps", {"job": "web"})], None, 'no feedback on series {job="api"}'),
])
def test_what_cannot_be_picked_is_said(records: list[AlertRecord], baseline: str | None, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        pick_feedback(records, series(job="api"), baseline)


def test_a_band_widened_by_feedback_stays_in_the_natural_range() -> None:
    """The daemon serves a widened band clipped to the series' range; the replay must too."""
    from smartmetrics.evaluation.backtest import WalkForward

    t = np.arange(0, 3600, 300)
    n = len(t)
    band = WalkForward(np.full(n, 1.0), np.full(n, 0.5), np.full(n, 1.5), *(np.full(n, np.nan) for _ in range(3)),
                       periods=((0, 3600),), floor=np.zeros(n), ceiling=np.full(n, np.nan))
    widened = band.with_feedback(Series({}, t, np.ones(n), 300), lambda start: {"below": 3.0, "above": 3.0})
    assert widened.lower.min() == 0.0 and widened.upper.max() > 1.5  # x3 below reaches -0.5: held at 0
