"""Training-data helpers: the day-of-week test and the level-shift finder."""

from __future__ import annotations

import numpy as np
import pytest

from smartmetrics.engine.series import Series
from smartmetrics.engine.training import clean_training, find_level_shift, weekly_effect

DAY = 86400
STEP = 300
EPOCH = 1_704_067_200  # a Monday


def flat(days: int, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    t = EPOCH + STEP * np.arange(days * DAY // STEP, dtype=np.int64)
    return Series({}, t, 100 + rng.normal(0, 1, len(t)), STEP)


def with_values(series: Series, values: np.ndarray) -> Series:
    return Series(series.labels, series.timestamps, values, series.step)


def test_weekend_dip_is_a_weekly_effect_from_nine_days() -> None:
    s = flat(9)
    weekend = ((s.timestamps // DAY) + 3) % 7 >= 5
    assert weekly_effect(with_values(s, s.values - 30 * weekend))
    assert not weekly_effect(s)


def test_two_deploys_framing_two_days_are_not_a_weekly_effect() -> None:
    s = flat(9, seed=1)
    t = s.timestamps
    up = (t >= EPOCH + 3 * DAY + 16 * 3600).astype(float)
    down = (t >= EPOCH + 6 * DAY + 8 * 3600).astype(float)
    assert not weekly_effect(with_values(s, s.values + 30 * up - 45 * down))
    later = t >= EPOCH + 7 * DAY + 10 * 3600  # one shift near the end of the window
    assert not weekly_effect(with_values(s, s.values + 30 * later))


def test_level_shift_is_found_between_two_others() -> None:
    s = flat(10, seed=2)
    t, y = s.timestamps, s.values.copy()
    y[t >= EPOCH + 2 * DAY] += 40
    y[t >= EPOCH + 5 * DAY + 6 * 3600] -= 25
    y[t >= EPOCH + 8 * DAY] += 30
    at, jump = find_level_shift(y - 100, STEP)
    assert abs(jump) > 20
    assert min(abs(int(t[at]) - int(EPOCH + k)) for k in (2 * DAY, 5 * DAY + 6 * 3600, 8 * DAY)) <= 3600


def test_a_steady_trend_is_not_a_level_shift() -> None:
    s = flat(6, seed=3)
    y = s.values + np.linspace(0, 60, len(s.values))
    assert find_level_shift(y, STEP) is None


@pytest.mark.parametrize("start_day", range(7))
def test_a_rising_weekly_series_keeps_its_first_week(start_day: int) -> None:
    """Two weeks of a rising series with a daily cycle and quiet weekends: against a flat weekly
    profile every slot of the week seen twice steps up by a week's trend where the second week
    begins, and that step was taken for a level shift that cut the first week (and its weekend)."""
    rng = np.random.default_rng(start_day)
    t = EPOCH + start_day * DAY + STEP * np.arange(13 * DAY // STEP, dtype=np.int64)
    weekend = ((t // DAY) + 3) % 7 >= 5
    y = 60 + 2.0 * (t - t[0]) / DAY + 30 * np.sin(2 * np.pi * (t % DAY) / DAY) - 15 * weekend
    series = Series({}, t, y + rng.normal(0, 1, len(t)), STEP)
    train, info = clean_training(series, seasonal=True, period=7 * DAY)
    assert info["level_shift"] is None
    assert train.start == series.start


def test_an_incident_of_hours_that_never_peaks_is_masked_from_training() -> None:
    s = flat(7)
    values = s.values.copy()
    at, width = 4 * 288, 24  # two hours 4.5 sigmas up: never 6 sigmas, but plainly an incident
    values[at:at + width] += 4.5 * float(np.std(s.values))
    cleaned, info = clean_training(with_values(s, values), seasonal=False)
    masked = np.isnan(cleaned.values) & np.isfinite(values)
    assert masked[at + 2:at + width - 2].all()
    assert info["masked"] < 2 * width  # and not much else


def test_a_history_ending_on_a_quiet_weekend_keeps_its_weekdays() -> None:
    """Against Sunday's level alone the weekdays look like one long incident; against the whole
    history the weekend does. Neither is: only what both call an incident is masked."""
    t = EPOCH + 2 * DAY + STEP * np.arange(5 * DAY // STEP, dtype=np.int64)  # Wednesday to Sunday
    weekend = ((t // DAY) + 3) % 7 >= 5
    y = 1000 * (1 + 0.6 * np.cos(2 * np.pi * ((t % DAY) / 3600 - 14) / 24)) * np.where(weekend, 0.5, 1.0)
    y = y + np.random.default_rng(0).normal(0, 60, len(t))
    y[100:112] += 2000  # and a real incident on Wednesday
    cleaned, _ = clean_training(Series({}, t, y, STEP), seasonal=True)
    masked = np.isnan(cleaned.values)
    assert masked[~weekend].mean() < 0.05, f"{masked[~weekend].mean():.0%} of the weekdays masked"
    assert masked[100:112].all()


def test_spikes_that_recur_every_day_stay_in_training_and_incidents_do_not() -> None:
    rng = np.random.default_rng(11)
    t = np.arange(0, 10 * 86400, 300, dtype=np.int64)
    y = 50 + rng.normal(0, 1, len(t))
    spiky = y.copy()
    spiky[rng.choice(len(t), 40, replace=False)] += 12  # four short bursts a day, at any hour: its nature
    _, info = clean_training(Series({}, t, spiky, 300), seasonal=False)
    assert info["masked"] == 0
    incident = y.copy()
    incident[1000:1006] += 12  # twice in ten days: incidents, kept out of the band
    incident[2000:2004] += 12
    _, info = clean_training(Series({}, t, incident, 300), seasonal=False)
    assert info["masked"] >= 10
