"""The corpus-ceiling benchmark's tally: false alerts at benign changes are told from the others."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smartmetrics.benchmarks.ceiling import Tally, tally_case
from smartmetrics.evaluate import Case
from smartmetrics.series import Series


def test_alerts_are_split_into_found_events_benign_changes_and_the_rest() -> None:
    t = np.arange(0, 2000, 10)
    frame = pd.DataFrame({"timestamp": t, "alert": np.isin(t, [150, 520, 900]).astype(int),
                          "yhat_upper": np.where(t >= 300, 1.0, np.nan)})
    case = Case("c", Series({}, t, np.zeros(len(t)), 10), ((100, 200),))
    tally = tally_case(case, frame, for_points=1, changes=(50, 500), after=60)
    assert tally == Tally(events=1, detected=1, false_alerts=2, at_changes=1, changes=1)  # 50: before any band
    assert tally.scores() == pytest.approx((1 / 3, 1.0, 0.5))  # one found, two false
    assert tally.scores(drop_changes=True) == pytest.approx((0.5, 1.0, 2 / 3))  # the one at a change left out
