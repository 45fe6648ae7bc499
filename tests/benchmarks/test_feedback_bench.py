"""The feedback benchmark: noise on a first-week false alert quiets its repeat, a labelled anomaly still
fires, and the benchmark refuses figures it cannot vouch for."""

from __future__ import annotations

import numpy as np

from smartmetrics.benchmarks.feedback import DAY, CaseResult, judge_case, problems
from smartmetrics.engine.series import Series
from smartmetrics.evaluation.synth import Anomaly, LabelledSeries


def spiky(days: int = 21) -> LabelledSeries:
    """A steady series with the same unlabelled 40-minute bump on day 9 and day 16 (normal, say
    on-call), and a labelled outage-size spike on day 18."""
    t = 1_704_067_200 + 300 * np.arange(days * DAY // 300, dtype=np.int64)
    values = 100 + np.random.default_rng(4).normal(0, 2, len(t))
    for day in (9, 16):
        bump = (t >= t[0] + day * DAY + 12 * 3600) & (t < t[0] + day * DAY + 12 * 3600 + 2400)
        values[bump] += 18
    start = int(t[0] + 18 * DAY + 6 * 3600)
    values[(t >= start) & (t < start + 3600)] += 80
    return LabelledSeries(Series({"series": "0"}, t, values, 300), "stable", (),
                          (Anomaly("spike", start, start + 3300),), "low")


def test_noise_on_the_first_weeks_false_alert_quiets_its_repeat_and_keeps_the_anomaly() -> None:
    result = judge_case(spiky(), "spiky", 7 * DAY)
    assert result.noise == 1 and result.expected_widened and result.widened and result.changed
    assert result.moved_early == 0  # nothing moved before the first retrain that saw the feedback
    assert sum(result.false_before.values()) >= 1 and sum(result.false_after.values()) == 0
    assert result.events == 1 and result.caught_before == result.caught_after == 1
    assert problems([result], 1) == []


def test_the_benchmark_names_what_it_cannot_vouch_for() -> None:
    fine = CaseResult("a", rows=10, banded_before=True, banded_after=True, noise=1, widened=3,
                      expected_widened=True, changed=True)
    assert problems([fine], 1) == []
    assert problems([fine], 2) == ["1 of 2 series replayed"]
    quiet = CaseResult("b", rows=10, expected_widened=True)
    assert problems([fine, quiet], 2) == ["feedback applied to 1 series, expected 2: b"]
    assert problems([CaseResult("c", rows=10)], 1) == ["the feedback widened no band"]
    early = CaseResult("d", rows=-1, noise=1, widened=1, expected_widened=True, changed=True, moved_early=5)
    assert problems([early], 1) == ["1 series not replayed in full: d",
                                    "1 series' bands moved before their first retrain with feedback: d"]
