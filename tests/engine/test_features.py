"""Features: periods on known signals, Syntetos-Boylan numbers on known demand, robustness to gaps."""

from __future__ import annotations

import numpy as np
import pytest

from smartmetrics.engine.features import compute_features, intermittency, step_fit
from smartmetrics.engine.periods import cv_strength
from smartmetrics.engine.robust import theil_sen_slope

STEP, DAY = 300, 86400


def _sine(period: int, days: int = 14, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    t = np.arange(days * DAY // STEP) * STEP
    rng = np.random.default_rng(seed)
    return 100 + 10 * np.sin(2 * np.pi * t / period) + rng.normal(0, noise * 10, len(t))


@pytest.mark.parametrize("period", [DAY, 6 * 3600, 3600])
def test_period_found_on_a_known_sine(period: int) -> None:
    f = compute_features(_sine(period), STEP)
    assert f.periods and abs(f.periods[0] - period) <= STEP


def test_odd_period_found_by_the_periodogram_within_one_step() -> None:
    period = 5 * 3600 + 1500  # not hourly, not daily: the dominant-period search must find it
    f = compute_features(_sine(period), STEP)
    assert f.periods and abs(f.periods[0] - period) <= STEP
    assert abs(f.values["other_period"] - period) <= STEP


def test_noise_has_no_period_and_low_strength() -> None:
    rng = np.random.default_rng(1)
    f = compute_features(100 + rng.normal(0, 5, 14 * DAY // STEP), STEP)
    assert f.periods == ()
    assert f.values["seasonal_daily"] < 0.2 and f.values["seasonal_weekly"] < 0.3


def test_weekly_cycle_found_beside_daily() -> None:
    t = np.arange(14 * DAY // STEP) * STEP
    weekend = (((t // DAY) + 3) % 7 >= 5).astype(float)
    values = (100 + 30 * np.sin(2 * np.pi * t / DAY)) * (1 - 0.4 * weekend)
    f = compute_features(values + np.random.default_rng(2).normal(0, 2, len(t)), STEP)
    assert set(f.periods) == {DAY, 7 * DAY}


def test_adi_and_cv2_on_known_demand() -> None:
    demand = np.zeros(40)
    demand[[3, 7, 11, 15, 19, 23, 27, 31]] = [2, 2, 2, 2, 6, 6, 6, 6]
    f = intermittency(demand)
    assert f["zero_share"] == pytest.approx(32 / 40)
    assert f["adi"] == pytest.approx(4.0)
    sizes = np.array([2, 2, 2, 2, 6, 6, 6, 6.0])
    assert f["cv2"] == pytest.approx((sizes.std() / sizes.mean()) ** 2)  # 0.25 < 0.49: "intermittent"
    assert f["nonzero_runs"] == 8


def test_nan_gaps_do_not_change_the_verdict_much() -> None:
    values = _sine(DAY, noise=0.2)
    gappy = values.copy()
    rng = np.random.default_rng(3)
    gappy[rng.random(len(gappy)) < 0.05] = np.nan
    gappy[1000:1036] = np.nan  # a three-hour outage
    a, b = compute_features(values, STEP), compute_features(gappy, STEP)
    assert b.periods == a.periods == (DAY,)
    assert abs(a.values["seasonal_daily"] - b.values["seasonal_daily"]) < 0.05
    assert b.values["finite_share"] < 0.96
    assert all(np.isfinite(v) for v in b.values.values())


def test_one_cycle_incident_does_not_hide_a_cycle() -> None:
    values = _sine(DAY, noise=0.1)
    values[2000:2012] += 500  # one hour at 50x the amplitude
    assert cv_strength(values, DAY // STEP) > 0.8


def test_step_fit_finds_shifts_and_theil_sen_ignores_one() -> None:
    y = np.r_[np.zeros(50), np.full(50, 4.0), np.full(50, 1.0)]
    fit, jump = step_fit(y, 20)
    assert jump == pytest.approx(4.0)
    assert np.allclose(fit, y)
    assert theil_sen_slope(np.r_[np.zeros(8), np.ones(4) * 10]) == 0.0


def test_all_nan_and_tiny_inputs_do_not_crash() -> None:
    assert compute_features(np.full(100, np.nan), STEP).values["finite_points"] == 0
    assert compute_features(np.array([1.0, 2.0, 3.0]), STEP).periods == ()


def test_brief_nightly_spike_is_a_daily_cycle_not_a_weekly_one() -> None:
    t = np.arange(14 * DAY // STEP) * STEP
    rng = np.random.default_rng(4)
    values = np.round(0.08 + rng.choice([-0.015, 0.015], len(t)), 3)  # a quantised, idle gauge
    values[(t % DAY) // STEP == 30] = 1.4  # a five-minute job at 02:30 every night
    f = compute_features(values, STEP)
    assert 7 * DAY not in f.periods
    assert f.periods == (DAY,)
