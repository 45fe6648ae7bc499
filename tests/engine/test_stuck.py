"""Stuck values: the fit's `stuck_after` and the backtest's stuck alert."""

from __future__ import annotations

import numpy as np

from smartmetrics.engine.ensemble import FitSettings, fit_series
from smartmetrics.engine.firing import AlertRules
from smartmetrics.engine.series import Series
from smartmetrics.engine.stuck import MAX_SECONDS, MIN_STEPS, held_seconds, stuck_after
from smartmetrics.evaluation.backtest import backtest_series

STEP, DAY = 300, 86400
EPOCH = 1_704_067_200


def noisy(days: float = 7, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    t = EPOCH + STEP * np.arange(int(days * DAY / STEP), dtype=np.int64)
    y = np.round(100 + 20 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 3, len(t)), 1)
    return Series({"job": "api"}, t, y, STEP)


def test_held_seconds_ignores_gaps_and_restarts_on_change() -> None:
    t = np.arange(7) * 60
    held = held_seconds(t, np.array([5.0, 5.0, np.nan, 5.0, 6.0, 6.0, 5.0]))
    assert np.isnan(held[2])
    assert held[[0, 1, 3, 4, 5, 6]].tolist() == [0.0, 60.0, 180.0, 0.0, 60.0, 0.0]


def test_a_moving_series_gets_a_short_limit_and_sparse_or_slow_ones_none() -> None:
    s = noisy()
    limit = stuck_after(s.timestamps, s.values, STEP)
    assert MIN_STEPS * STEP <= limit <= 2 * MIN_STEPS * STEP
    sparse = np.where(np.random.default_rng(1).random(len(s)) < 0.1, 3.0, 0.0)
    assert stuck_after(s.timestamps, sparse, STEP) == 0
    steps = np.repeat(np.arange(len(s) // 48, dtype=float), 48)  # a new value every 4 hours
    assert stuck_after(s.timestamps[:len(steps)], steps, STEP) == 0
    assert stuck_after(s.timestamps[:100], s.values[:100], STEP) == 0  # under a day: unknown


def test_one_past_flatline_does_not_raise_the_limit() -> None:
    s = noisy()
    before = stuck_after(s.timestamps, s.values, STEP)
    values = s.values.copy()
    values[1000:1036] = values[999]  # three hours stuck, once
    assert stuck_after(s.timestamps, values, STEP) == before
    assert 2 * 3 * 3600 > MAX_SECONDS  # with the longest hold it would have been switched off


def test_backtest_alerts_on_a_flatline_inside_the_band_and_not_before() -> None:
    s = noisy(days=6)
    values = s.values.copy()
    start = 4 * DAY // STEP + 100
    values[start:start + 36] = values[start - 1]  # three hours at the last value
    series = Series(s.labels, s.timestamps, values, STEP)
    fit = lambda train, horizon: fit_series(train, FitSettings(horizon=horizon))
    rules = AlertRules.of_sensitivity("medium")
    frame = backtest_series(series, fit, rules, history=14 * DAY)
    onsets = np.flatnonzero(frame["alert"].to_numpy())
    assert len(onsets) == 1
    assert start < onsets[0] <= start + 2 * MIN_STEPS
    inside = frame.iloc[start:start + 36]
    assert (inside["anomaly_score"] < 1).all()  # the band alone would never have seen it
    # the same series without the flatline: no alert at all
    clean = backtest_series(s, fit, rules, history=14 * DAY)
    assert clean["alert"].sum() == 0
