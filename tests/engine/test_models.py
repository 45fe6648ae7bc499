"""One contract test over every registered forecaster, plus checks of the maths some models own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smartmetrics.engine.models import MODELS, NotFittedError, model_from_dict
from smartmetrics.engine.models.base import Forecaster
from smartmetrics.engine.series import Series

DAY = 86400
STEP = 900
EPOCH = 1_704_067_200


def seasonal_series(days: float = 4, seed: int = 0, level: float = 100.0, amp: float = 30.0) -> Series:
    """A daily sine around `level` with Gaussian noise and a few gaps, midnight-aligned."""
    rng = np.random.default_rng(seed)
    t = EPOCH + STEP * np.arange(int(days * DAY / STEP), dtype=np.int64)
    y = level + amp * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 2, len(t))
    y[rng.choice(len(y), 5, replace=False)] = np.nan
    return Series({"job": "api"}, t, y, STEP)


@pytest.fixture(scope="module")
def series() -> Series:
    return seasonal_series()


def _params(model: object) -> set[str]:
    return {k for k in vars(type(model)()) if not k.endswith("_")}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forecaster_contract(name: str, series: Series) -> None:
    cls = MODELS[name]
    model = cls()
    assert isinstance(model, Forecaster) and cls.name == name
    with pytest.raises(NotFittedError):
        model.predict(np.array([series.end + STEP]))
    before_t, before_y = series.timestamps.copy(), series.values.copy()
    assert model.fit(series) is model
    np.testing.assert_array_equal(series.timestamps, before_t)
    np.testing.assert_array_equal(series.values, before_y)
    assert {k for k in vars(model) if not k.endswith("_")} == _params(model), "fitted state must end in _"

    future = series.end + STEP * np.arange(1, 2 * DAY // STEP + 1, dtype=np.int64)
    fc = model.predict(future)
    assert fc.mean.shape == fc.scale.shape == future.shape
    assert np.all(np.isfinite(fc.mean)) and np.all(fc.scale > 0)
    assert np.all(np.abs(fc.mean - 100) < 60), "forecast far outside the data's range"

    text = json.dumps(model.to_dict(), allow_nan=False)
    restored = model_from_dict(json.loads(text))
    again = restored.predict(future)
    np.testing.assert_array_equal(again.mean, fc.mean)
    np.testing.assert_array_equal(again.scale, fc.scale)


@pytest.mark.parametrize("name", ["profile_day", "stl", "ets", "gbm"])
def test_seasonal_models_follow_the_daily_cycle(name: str, series: Series) -> None:
    future = series.end + STEP * np.arange(1, DAY // STEP + 1, dtype=np.int64)
    truth = 100 + 30 * np.sin(2 * np.pi * future / DAY)
    fc = MODELS[name]().fit(series).predict(future)
    assert np.mean(np.abs(fc.mean - truth)) < 4.0
    assert 0.5 < np.median(fc.scale) < 6.0


def test_holt_winters_matches_statsmodels_forecast(series: Series) -> None:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    from smartmetrics.engine.models.resample import downsample

    model = MODELS["ets"]().fit(series)
    grid, y = downsample(series, model.width_)
    res = ExponentialSmoothing(y, trend="add", damped_trend=True, seasonal="add", seasonal_periods=24,
                               initialization_method="heuristic").fit()
    ours = model.predict(grid[-1] + model.width_ * np.arange(1, 49)).mean
    np.testing.assert_allclose(ours, res.forecast(48), rtol=1e-6)


def test_fallback_fits_an_empty_series() -> None:
    t = EPOCH + STEP * np.arange(10, dtype=np.int64)
    fc = MODELS["fallback"]().fit(Series({}, t, np.full(10, np.nan), STEP)).predict(t + 10 * STEP)
    assert np.all(fc.mean == 0) and np.all(fc.scale == 1)


def test_intermittent_keeps_the_zero_inflated_moments() -> None:
    rng = np.random.default_rng(3)
    t = EPOCH + STEP * np.arange(2000, dtype=np.int64)
    y = np.where(rng.random(2000) < 0.1, 5.0, 0.0)
    model = MODELS["intermittent"]().fit(Series({}, t, y, STEP))
    assert model.p_nonzero_ == pytest.approx(0.1, abs=0.03)
    assert model.predict(t[:1]).mean[0] == pytest.approx(0.5, abs=0.15)


def test_a_daily_profile_s_slot_never_seen_follows_the_shape_around_it() -> None:
    """Three days of a sine whose 05:45-06:15 was masked on every day (an incident at the same time, or
    a scrape gap): the forecast there lies on the curve, not at the overall median half a swing away."""
    s = seasonal_series(days=3, amp=40.0)
    hole = ((s.timestamps % DAY) >= 5 * 3600 + 2700) & ((s.timestamps % DAY) <= 6 * 3600 + 900)
    model = MODELS["profile_day"]().fit(Series({}, s.timestamps, np.where(hole, np.nan, s.values), STEP))
    at = 3 * DAY + EPOCH + np.arange(5 * 3600 + 2700, 6 * 3600 + 901, STEP)
    truth = 100 + 40 * np.sin(2 * np.pi * at / DAY)  # near the peak, 140
    assert np.abs(model.predict(at).mean - truth).max() < 5


def test_weekly_profile_fills_an_unseen_weekend_afternoon_from_the_other_weekend_day() -> None:
    """Nine days from a Thursday see one weekend; its Saturday afternoon was masked as an incident.
    The next Saturday afternoon is forecast at Sunday's level, not at a weekday's."""
    step = 300
    t = np.arange(0, 9 * DAY, step, dtype=np.int64)  # 1970-01-01 was a Thursday
    weekend = ((t // DAY) + 3) % 7 >= 5
    y = 100 + 20 * np.sin(2 * np.pi * (t % DAY) / DAY) - 40 * weekend
    y = y + np.random.default_rng(0).normal(0, 1, len(t))
    masked = (t >= 2 * DAY + 10 * 3600) & (t < 2 * DAY + 18 * 3600)  # Saturday 10:00-18:00
    model = MODELS["profile_week"]().fit(Series({}, t, np.where(masked, np.nan, y), step))
    next_saturday = 9 * DAY + 12 * 3600 + np.arange(0, 4 * 3600, step)
    truth = 100 + 20 * np.sin(2 * np.pi * (next_saturday % DAY) / DAY) - 40
    assert np.abs(model.predict(next_saturday).mean - truth).max() < 8
