"""The corpus-ceiling benchmark's tally: false alerts at benign changes are told from the others."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smartmetrics.benchmarks.ceiling import tally_case
from smartmetrics.engine.series import Series
from smartmetrics.evaluation.evaluate import Case


def test_alerts_are_split_into_found_events_benign_changes_and_the_rest() -> None:
    t = np.arange(0, 2000, 10)
    frame = pd.DataFrame({"timestamp": t, "alert": np.isin(t, [150, 520, 900]).astype(int),
                          "yhat_upper": np.where(t >= 300, 1.0, np.nan)})
    case = Case("c", Series({}, t, np.zeros(len(t)), 10), ((100, 200),))
    tally = tally_case(case, frame, for_points=1, changes=(50, 500), after=60)
    found = tally.events
    assert (found.events, found.detected, found.false_alerts) == (1, 1, 2)
    assert (tally.at_changes, tally.changes) == (1, 1)  # the change at 50 came before any band
    # one found and two false; then without the false alert at a change
    assert (found.precision(), found.recall(), found.f1()) == pytest.approx((1 / 3, 1.0, 0.5))
    kept = tally.without_changes()
    assert (kept.precision(), kept.recall(), kept.f1()) == pytest.approx((0.5, 1.0, 2 / 3))
