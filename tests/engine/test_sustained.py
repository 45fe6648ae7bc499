"""Sustained deviations: the fit's limits for the trailing mean and the backtest's sustained alert."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from smartmetrics.engine.bands import band_policy
from smartmetrics.engine.ensemble import FitSettings, FittedSeries, fit_series
from smartmetrics.engine.firing import AlertRules
from smartmetrics.engine.series import Series
from smartmetrics.engine.sustained import mean_limits, rolling_mean, window_seconds
from smartmetrics.evaluation.backtest import assemble_frame, backtest_series, sustained_points

STEP, DAY = 300, 86400
EPOCH = 1_704_067_200


def lognormal(days: float = 8, seed: int = 0) -> Series:
    """Job durations: a heavy right tail, so a point band must reach far above the typical value."""
    rng = np.random.default_rng(seed)
    t = EPOCH + STEP * np.arange(int(days * DAY / STEP), dtype=np.int64)
    return Series({"job": "batch"}, t, np.round(40 * rng.lognormal(0, 0.9, len(t)), 2), STEP)


def errors(days: float = 8, seed: int = 0) -> Series:
    """A sparse error counter: zero most of the time, a few errors now and then."""
    rng = np.random.default_rng(seed)
    t = EPOCH + STEP * np.arange(int(days * DAY / STEP), dtype=np.int64)
    y = (rng.random(len(t)) < 0.1) * rng.poisson(3, len(t)) / STEP
    return Series({"job": "api"}, t, y, STEP)


def test_rolling_mean_needs_half_the_window() -> None:
    t = np.arange(0, 4 * 3600, STEP)
    values = np.ones(len(t))
    values[10:30] = np.nan  # a scrape gap of 100 minutes
    mean = rolling_mean(t, values, 3600, STEP)
    assert np.isnan(mean[:5]).all()  # fewer than 6 samples in the first half hour
    assert np.isnan(mean[30]) and mean[36] == 1.0  # 1 sample after the gap, then 7
    assert window_seconds(STEP) == 3600 and window_seconds(3600) == 3 * 3600


def test_limits_contain_the_history_and_a_sparse_counter_has_no_lower_limit() -> None:
    s = lognormal()
    lim = mean_limits(s.timestamps, s.values, STEP, band_policy("medium").coverage)
    mean = rolling_mean(s.timestamps, s.values, lim["window"], STEP)
    assert np.nanmax(mean) <= lim["upper"] and np.nanmin(mean) >= lim["lower"]
    e = errors()
    sparse = mean_limits(e.timestamps, e.values, STEP, band_policy("medium").coverage)
    assert sparse["lower"] is None and sparse["upper"] > np.nanmean(e.values)
    assert mean_limits(s.timestamps[:500], s.values[:500], STEP, 0.9995) is None  # under 3 days
    flat = np.full(len(s), 2.0)
    assert mean_limits(s.timestamps, flat, STEP, 0.9995) is None


def test_limits_ignore_the_partial_window_at_the_start_of_the_history() -> None:
    # A job spiking twice, half an hour apart, every 8 hours, with the history starting at a spike:
    # the first hour's means are taken over fewer points and would set the limit far too high.
    t = EPOCH + STEP * np.arange(7 * DAY // STEP, dtype=np.int64)
    values = np.zeros(len(t))
    values[np.isin((t - EPOCH) % (8 * 3600), (0, 1800))] = 20.0
    lim = mean_limits(t, values, STEP, band_policy("medium").coverage)
    full = rolling_mean(t, values, 3600, STEP)[t >= t[0] + 3600]
    assert lim["upper"] == pytest.approx(np.nanmax(full), rel=1e-8)  # two spikes in an hour: 40 / 13 samples
    assert lim["upper"] > np.nanmax(full)  # a hair beyond: an hour like the history's never crosses it
    burst = values.copy()
    burst[-12:] = np.where(np.arange(12) % 3 == 0, 20.0, 0.0)  # four spikes in the last hour
    assert sustained_points(Series({}, t, burst, STEP), None, np.full(len(t), lim["upper"]))[-1]


def test_fit_stores_limits_for_noisy_and_sparse_series_only() -> None:
    fitted = fit_series(lognormal(), FitSettings())
    assert fitted.classification["curve_type"] == "noisy"
    assert fitted.sustained is not None and fitted.sustained["window"] == 3600
    again = FittedSeries.from_dict(fitted.to_dict())
    assert again.sustained == fitted.sustained
    t = EPOCH + STEP * np.arange(8 * DAY // STEP, dtype=np.int64)
    rng = np.random.default_rng(3)
    seasonal = Series({}, t, 100 + 30 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 2, len(t)), STEP)
    assert fit_series(seasonal, FitSettings()).sustained is None


def test_a_shift_inside_the_point_band_alerts_on_its_mean_only() -> None:
    s = lognormal(days=9)
    values = s.values.copy()
    start = 8 * DAY // STEP + 60
    values[start:start + 36] += 4 * np.median(s.values)  # three hours of slower jobs
    series = Series(s.labels, s.timestamps, values, STEP)
    fit = lambda train, horizon: fit_series(train, FitSettings(horizon=horizon))
    rules = AlertRules.of_sensitivity("medium")
    frame = backtest_series(series, fit, rules)
    onsets = np.flatnonzero(frame["alert"].to_numpy())
    assert len(onsets) == 1 and start <= onsets[0] < start + 24  # within the first two of its three hours
    assert frame["firing"].to_numpy()[:start].sum() == 0
    point_only = assemble_frame(series, *(frame[c].to_numpy() for c in ("yhat", "yhat_lower", "yhat_upper")),
                                replace(rules, sustained=False))
    assert point_only["firing"].to_numpy()[start:start + 36].sum() < 6  # mostly inside the band


def test_sustained_points_honour_the_direction() -> None:
    t = np.arange(0, 3 * 3600, STEP)
    s = Series({}, t, np.r_[np.ones(12), np.full(24, 9.0)], STEP)
    up = sustained_points(s, np.full(len(t), 0.5), np.full(len(t), 4.0), "up")
    down = sustained_points(s, np.full(len(t), 0.5), np.full(len(t), 4.0), "down")
    assert up[-1] and not up[:12].any()
    assert not down.any()


def test_a_missing_scrape_never_fires_the_sustained_test() -> None:
    t = np.arange(0, 3 * 3600, STEP)
    values = np.r_[np.ones(12), np.full(24, 9.0)]
    values[-3] = np.nan  # the mean over the hour still exists there; the value does not
    out = sustained_points(Series({}, t, values, STEP), None, np.full(len(t), 4.0))
    assert out[-4] and not out[-3] and out[-2]
