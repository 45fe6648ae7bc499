"""The engine's own window statistics give pandas' and numpy's values, to the bit, on awkward input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smartmetrics.engine.bands import _last_like_day
from smartmetrics.engine.robust import rolling_extremes, rolling_median
from smartmetrics.engine.series import Series


def _awkward(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise with repeated values, runs of gaps and a gap at each end."""
    x = np.round(rng.normal(0, 3, n))
    x[rng.random(n) < 0.2] = np.nan
    x[:3] = x[-2:] = np.nan
    x[n // 3:n // 3 + 25] = np.nan  # longer than any window below: windows without a value
    return x


@pytest.mark.parametrize("half", [1, 2, 6, 7, 20, 64])
def test_rolling_extremes_are_pandas_centred_max_and_min(half: int) -> None:
    rng = np.random.default_rng(half)
    x = _awkward(rng, 500)
    rolled = pd.Series(x).rolling(2 * half + 1, center=True, min_periods=1)
    high, low = rolling_extremes(x, half)
    np.testing.assert_array_equal(high, rolled.max().to_numpy())
    np.testing.assert_array_equal(low, rolled.min().to_numpy())


@pytest.mark.parametrize("width", [3, 6, 12, 13, 40, 60])
def test_rolling_median_at_some_points_is_the_whole_median_there(width: int) -> None:
    rng = np.random.default_rng(width)
    x = _awkward(rng, 400)
    whole = rolling_median(x, width)
    np.testing.assert_array_equal(whole, pd.Series(x).rolling(width, center=True, min_periods=1).median().to_numpy())
    at = rng.integers(0, len(x), 50)
    np.testing.assert_array_equal(rolling_median(x, width, at=at), whole[at])


def test_last_like_day_reads_the_days_with_data() -> None:
    """The days a series has data on, searched in its ascending timestamps, as a set lookup finds them."""
    rng = np.random.default_rng(3)
    t = np.arange(10 * 86400, 24 * 86400, 3600)
    values = rng.normal(size=len(t))
    values[(t // 86400) % 5 == 1] = np.nan  # some whole days without data
    train = Series({}, t, values, 3600)
    ts = 24 * 86400 + np.arange(0, 86400, 3600)
    seen = np.unique(t[np.isfinite(values)] // 86400)
    weekend = ((ts // 86400) + 3) % 7 >= 5
    expected = np.zeros(len(ts), dtype=np.int64)
    for lag in range(6, 0, -1):
        day = ts // 86400 - lag
        like = ((((day + 3) % 7) >= 5) == weekend) & np.isin(day, seen)
        expected = np.where(like, lag, expected)
    np.testing.assert_array_equal(_last_like_day(ts, train), np.where(expected >= 2, expected, 0))
    empty = Series({}, t, np.full(len(t), np.nan), 3600)
    assert not _last_like_day(ts, empty).any()
