"""Peers: grafana-adaptive against its formulas computed independently, static-3sigma, prophet-bands."""

from __future__ import annotations

import numpy as np
import pytest

from smartmetrics.engine.series import Series
from smartmetrics.evaluation.peers import (
    fit_static_3sigma,
    grafana_adaptive_band,
    grafana_for_points,
    prophet_band_fit,
)

STEP = 300
HOUR = 3600


@pytest.fixture(scope="module")
def hand_made() -> Series:
    """Eight and a half days of a noisy daily cycle at 5 minutes, with zeros and gaps."""
    rng = np.random.default_rng(3)
    t = np.arange(0, int(8.5 * 86400), STEP, dtype=np.int64)
    v = 50 + 30 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 8, len(t))
    v[rng.random(len(t)) < 0.05] = 0.0
    v[rng.random(len(t)) < 0.03] = np.nan
    v[1000:1010] = 400.0  # a burst so that the stddev filter keeps some hours
    return Series({}, t, v, STEP)


def window(series: Series, end: int, width: int) -> np.ndarray:
    """Positive finite samples with `end - width < t <= end` (a PromQL range selector on `select`)."""
    keep = (series.timestamps > end - width) & (series.timestamps <= end)
    v = series.values[keep]
    return v[np.isfinite(v) & (v > 0)]


def reference(series: Series, i: int) -> tuple[float, float, float]:
    """The adaptive strategy's formulas at row i, written out with plain loops."""
    t = int(series.timestamps[i])
    now = window(series, t, HOUR)
    avg = now.mean()
    filtered = []
    for j in np.flatnonzero((series.timestamps > t - 26 * HOUR) & (series.timestamps <= t)):
        w = window(series, int(series.timestamps[j]), HOUR)
        if len(w) and w.std() > 0.5 * w.mean():
            filtered.append(w.std())
    uppers, lowers = [1.5 * avg], [0.5 * avg]
    if filtered:
        st = float(np.mean(filtered))
        uppers.append(avg + 2 * st)
        lowers.append(avg - 2 * st)
    for offset in (23 * HOUR + 1800, 167 * HOUR + 1800):
        w = window(series, t - offset, HOUR)
        if len(w):
            uppers.append(w.mean() + 2 * w.std())
            lowers.append(w.mean() - 2 * w.std())
    return avg, max(0.0, min(lowers)), max(uppers)


@pytest.mark.parametrize("i", [11, 300, 1005, 1020, 2100, 2440])
def test_grafana_adaptive_matches_formulas(hand_made: Series, i: int) -> None:
    yhat, lower, upper = grafana_adaptive_band(hand_made)
    if not np.isfinite(hand_made.values[i - 11 : i + 1]).any():
        pytest.skip("no sample in the hour")
    expected = reference(hand_made, i)
    assert (yhat[i], lower[i], upper[i]) == pytest.approx(expected, rel=1e-9)


def test_grafana_adaptive_is_causal(hand_made: Series) -> None:
    before = grafana_adaptive_band(hand_made)
    values = hand_made.values.copy()
    values[2000:] = 1e6
    after = grafana_adaptive_band(Series({}, hand_made.timestamps, values, STEP))
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a[:2000], b[:2000])
        assert not np.allclose(a[2000:], b[2000:], equal_nan=True)


def test_grafana_for_is_five_minutes() -> None:
    assert grafana_for_points(300) == 2 and grafana_for_points(60) == 6 and grafana_for_points(3600) == 1


def test_static_3sigma_band_is_constant_mean_plus_minus_three_sd() -> None:
    values = np.array([1.0, 2.0, np.nan, 3.0, 6.0])
    band = fit_static_3sigma(Series({}, np.arange(5, dtype=np.int64), values, 1), 3)
    y, lo, hi = band.band_at(np.array([10, 11, 12]))
    sd = np.std([1.0, 2.0, 3.0, 6.0])
    np.testing.assert_allclose(y, 3.0)
    np.testing.assert_allclose(lo, 3.0 - 3 * sd)
    np.testing.assert_allclose(hi, 3.0 + 3 * sd)
    assert fit_static_3sigma(Series({}, np.arange(2, dtype=np.int64), np.full(2, np.nan), 1), 3) is None


def test_prophet_bands_widen_with_interval_width() -> None:
    t = np.arange(0, 7 * 86400, 3600, dtype=np.int64)
    v = 10 + 3 * np.sin(2 * np.pi * t / 86400) + np.random.default_rng(0).normal(0, 0.5, len(t))
    train = Series({}, t, v, 3600)
    future = t[-1] + 3600 * np.arange(1, 25)
    y80, lo80, hi80 = prophet_band_fit(0.8)(train, 86400).band_at(future)
    _, lo99, hi99 = prophet_band_fit(0.99)(train, 86400).band_at(future)
    assert np.isfinite(y80).all() and (lo80 < y80).all() and (y80 < hi80).all()
    assert np.median(hi99 - lo99) > 1.5 * np.median(hi80 - lo80)
    assert np.corrcoef(y80, np.sin(2 * np.pi * future / 86400))[0, 1] > 0.9  # follows the daily cycle
