"""The engine's window statistics give pandas' values (to the bit, but for a mean's summation order) on
awkward input, and most fits run without importing pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from smartmetrics.engine.bands import _last_like_day
from smartmetrics.engine.robust import rolling_extremes, rolling_median
from smartmetrics.engine.series import Series
from smartmetrics.engine.sustained import min_points, rolling_mean, window_seconds


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
    x[rng.random(len(x)) < 0.02] = np.inf  # a value no metric can mean: ignored, as pandas' NaN
    x[rng.random(len(x)) < 0.02] = -np.inf
    rolled = pd.Series(np.where(np.isinf(x), np.nan, x)).rolling(2 * half + 1, center=True, min_periods=1)
    high, low = rolling_extremes(x, half)
    np.testing.assert_array_equal(high, rolled.max().to_numpy())
    np.testing.assert_array_equal(low, rolled.min().to_numpy())


@pytest.mark.parametrize("width", [1, 2, 3, 6, 12, 13, 40, 60, 288])
def test_rolling_median_is_pandas_centred_median(width: int) -> None:
    rng = np.random.default_rng(width)
    x = _awkward(rng, 400)
    x[rng.random(len(x)) < 0.02] = np.inf  # a missing value to pandas' median, as NaN
    expected = pd.Series(np.where(np.isinf(x), np.nan, x)).rolling(width, center=True, min_periods=1).median()
    np.testing.assert_array_equal(rolling_median(x, width), expected.to_numpy())


def test_windows_of_nothing_are_nothing() -> None:
    assert rolling_median(np.array([]), 12).tolist() == []
    assert [a.tolist() for a in rolling_extremes(np.array([]), 6)] == [[], []]
    assert rolling_mean(np.array([], dtype=np.int64), np.array([]), 3600, 300).tolist() == []


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


@pytest.mark.parametrize("step", [60, 300, 900])
def test_rolling_mean_is_the_trailing_time_window_mean(step: int) -> None:
    """The sustained alert's trailing mean: pandas' closed time window [t - window, t], with the rule's
    guard of half the expected samples; summed in another order, so equal to a few ulps."""
    rng = np.random.default_rng(step)
    t = np.arange(0, 3 * 86400, step)
    x = rng.lognormal(3, 1, len(t))
    x[rng.random(len(t)) < 0.3] = np.nan
    x[100:140] = np.nan
    window = window_seconds(step)
    rolled = pd.Series(x, index=pd.to_datetime(t, unit="s")).rolling(f"{window}s", closed="both")
    expected = np.where(rolled.count().to_numpy() >= min_points(window, step), rolled.mean().to_numpy(), np.nan)
    got = rolling_mean(t, x, window, step)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_one_huge_sample_moves_only_the_means_of_its_windows() -> None:
    """A counter's 2**64 glitch: the windows that hold it are huge, every later mean is its own."""
    rng = np.random.default_rng(7)
    t = np.arange(0, 14 * 86400, 300)
    x = rng.lognormal(4.6, 0.3, len(t))
    x[1000] = 2.0 ** 64
    got = rolling_mean(t, x, 3600, 300)
    exact = np.array([np.mean(x[max(0, i - 12):i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(got[12:], exact[12:], rtol=1e-13)
    assert (got[1013:] < 1e3).all()


def test_rolling_mean_refuses_timestamps_off_the_grid() -> None:
    with pytest.raises(ValueError, match="60s apart"):
        rolling_mean(np.array([0, 60, 150]), np.ones(3), 120, 60)


def test_a_fit_does_not_import_pandas() -> None:
    """A worker process fits these curve types without pandas (0.15 s of start-up per worker, per
    retrain of `fit`): their models are numpy's. (STL for trending curves, ETS and Prophet come with
    statsmodels or Prophet, which import it.)"""
    code = """
import sys, numpy as np
from smartmetrics.engine.batch import fit_batch
from smartmetrics.engine.ensemble import FitSettings
from smartmetrics.engine.series import Series
rng = np.random.default_rng(0)
t = np.arange(0, 8 * 86400, 300)
day = np.sin(2 * np.pi * (t % 86400) / 86400)
kinds = [100 + 30 * day + rng.normal(0, 2, len(t)), 50 + rng.normal(0, 1, len(t)),
         np.where(rng.random(len(t)) < 0.03, rng.exponential(5, len(t)), 0.0), np.full(len(t), 3.0),
         np.where((t // 3600) % 7 == 0, 90.0, 5.0) + rng.normal(0, 1, len(t)), rng.lognormal(0, 1, len(t))]
out = fit_batch([Series({"i": str(i)}, t, v, 300) for i, v in enumerate(kinds)], FitSettings(), [()] * len(kinds))
assert all(hasattr(o, "classification") for o in out), out
print(sorted({o.classification["curve_type"] for o in out}), "pandas" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    kinds, imported = done.stdout.rsplit(" ", 1)
    assert imported.strip() == "False", f"fitting {kinds} imported pandas"


@pytest.mark.parametrize(("n", "points"), [(1, 13), (5, 2), (400, 1), (400, 13), (1000, 61), (30, 64)])
def test_window_sums_are_each_windows_own_sum(n: int, points: int) -> None:
    from smartmetrics.engine.sustained import _window_sums

    x = np.random.default_rng(n).lognormal(3, 2, n)
    expected = [float(np.sum(x[max(0, i - points + 1):i + 1], dtype=np.longdouble)) for i in range(n)]
    np.testing.assert_allclose(_window_sums(x, points).astype(np.float64), expected, rtol=1e-15)
