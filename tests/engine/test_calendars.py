"""Calendars around the fit (issue 25): local time across daylight-saving switches, holidays and
maintenance windows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from smartmetrics.engine.calendars import utc_offsets
from smartmetrics.engine.ensemble import FitSettings, FittedSeries, fit_series
from smartmetrics.engine.series import Series
from smartmetrics.settings import zone_transitions

DAY, STEP = 86400, 300
BERLIN = zone_transitions("Europe/Berlin")
SPRING, AUTUMN = 1_711_843_200, 1_729_987_200  # 2024-03-31 and 2024-10-27, 00:00 UTC: the switches at 01:00 UTC


def local_clock_series(end: int, days: int = 14, seed: int = 0) -> Series:
    """A morning peak at 09:00 Berlin time every day, ending at `end`, plus one day after it (the truth)."""
    t = end - days * DAY + STEP * np.arange(1, (days + 1) * DAY // STEP + 1, dtype=np.int64)
    hour = ((t + utc_offsets(t, BERLIN)) % DAY) / 3600
    y = 100 + 80 * np.exp(-0.5 * ((hour - 9) / 1.5) ** 2) + np.random.default_rng(seed).normal(0, 2, len(t))
    return Series({"zone": "berlin"}, t, y, STEP)


def fit_and_truth(end: int, settings: FitSettings) -> tuple[FittedSeries, np.ndarray, np.ndarray]:
    full = local_clock_series(end)
    past = full.timestamps <= end
    train = Series(full.labels, full.timestamps[past], full.values[past], STEP)
    return fit_series(train, settings), full.timestamps[~past], full.values[~past]


@pytest.mark.parametrize("switch", [SPRING, AUTUMN], ids=["march", "october"])
def test_the_band_follows_the_local_clock_across_a_daylight_saving_switch(switch: int) -> None:
    local, t, y = fit_and_truth(switch, FitSettings(local_time=BERLIN))
    utc, _, _ = fit_and_truth(switch, FitSettings())
    peak_before = 8 if switch == SPRING else 7  # 09:00 in Berlin, in UTC: CET +1, CEST +2
    peak_after = 7 if switch == SPRING else 8
    assert (local.timestamps[np.argmax(local.yhat)] % DAY) // 3600 == peak_after
    assert (utc.timestamps[np.argmax(utc.yhat)] % DAY) // 3600 == peak_before  # the UTC fit stays put

    def coverage(f: FittedSeries) -> float:
        _, lower, upper = f.band_at(t)
        return float(np.mean((y >= lower) & (y <= upper)))

    assert coverage(local) >= 0.97
    assert coverage(utc) < 0.93  # off by an hour at every morning ramp


def test_a_history_across_the_switch_is_learned_on_the_local_clock() -> None:
    local, t, y = fit_and_truth(SPRING + 7 * DAY, FitSettings(local_time=BERLIN))
    utc, _, _ = fit_and_truth(SPRING + 7 * DAY, FitSettings())
    errors = [np.mean(np.abs(f.band_at(t)[0] - y)) for f in (local, utc)]
    assert (local.timestamps[np.argmax(local.yhat)] % DAY) // 3600 == 7
    assert errors[0] < 0.5 * errors[1]


def test_a_utc_zone_is_the_plain_fit_bit_for_bit() -> None:
    s = local_clock_series(SPRING)
    plain = fit_series(s, FitSettings())
    assert zone_transitions("UTC") == () == zone_transitions("Etc/UTC")
    zoned = fit_series(s, FitSettings(local_time=((0, 0),)))  # through the calendar path, offset 0
    for name in ("timestamps", "yhat", "lower", "upper"):
        assert np.array_equal(getattr(plain, name), getattr(zoned, name), equal_nan=True)


def test_a_fixed_offset_zone_keeps_the_table_on_the_utc_grid() -> None:
    s = local_clock_series(SPRING)
    f = fit_series(s, dataclasses.replace(FitSettings(), local_time=zone_transitions("Asia/Kolkata")))
    assert f.timestamps[0] == s.end + STEP and len(f.timestamps) == DAY // STEP
    assert f.data_end == s.end and np.isfinite(f.yhat).all()


WEDNESDAY = 1_704_844_800  # 2024-01-10, 00:00 UTC


def office_series(end: int, holidays: tuple[int, ...], days: int = 21, seed: int = 1) -> Series:
    """Office-hours traffic, half as much on weekends and holidays, from `days` before `end` to a day after."""
    t = end - days * DAY + STEP * np.arange(1, (days + 1) * DAY // STEP + 1, dtype=np.int64)
    quiet = np.isin(t // DAY, holidays) | ((t // DAY + 3) % 7 >= 5)
    y = (200 + 100 * np.sin(2 * np.pi * (t % DAY) / DAY - np.pi / 2)) * np.where(quiet, 0.4, 1.0)
    return Series({"job": "office"}, t, y + np.random.default_rng(seed).normal(0, 4, len(t)), STEP)


def split(full: Series, end: int) -> tuple[Series, np.ndarray, np.ndarray]:
    past = full.timestamps <= end
    return (Series(full.labels, full.timestamps[past], full.values[past], STEP),
            full.timestamps[~past], full.values[~past])


def outside(fit: FittedSeries, t: np.ndarray, y: np.ndarray) -> float:
    _, lower, upper = fit.band_at(t)
    return float(np.mean((y < lower) | (y > upper)))


def test_a_holiday_is_expected_to_look_like_a_sunday_and_a_weekday_dip_still_alerts() -> None:
    end, past_holiday, today = WEDNESDAY, WEDNESDAY // DAY - 7, WEDNESDAY // DAY
    train, t, y = split(office_series(end, (past_holiday, today)), end)
    settings = FitSettings(holidays=(past_holiday, today))
    fit = fit_series(train, settings)
    assert outside(fit, t, y) < 0.02  # no alert on the holiday
    assert fit.training["holidays"] == ["2024-01-03", "2024-01-10"]
    plain = fit_series(train, FitSettings(holidays=(past_holiday,)))  # the same dip, not a holiday today
    assert outside(plain, t, y) > 0.5
    assert outside(fit_series(train, FitSettings()), t, y) > 0.5  # without a calendar the dip alerts too


def test_the_day_after_a_holiday_is_judged_as_a_weekday() -> None:
    end, yesterday = WEDNESDAY, WEDNESDAY // DAY - 1
    train, t, y = split(office_series(end, (yesterday,)), end)
    with_holiday = fit_series(train, FitSettings(holidays=(yesterday,)))
    normal, _, _ = split(office_series(end, ()), end)
    without = fit_series(normal, FitSettings())
    assert outside(with_holiday, t, y) < 0.02
    assert np.median(with_holiday.lower) == pytest.approx(np.median(without.lower), rel=0.1)
    assert np.median(with_holiday.yhat) == pytest.approx(np.median(without.yhat), rel=0.05)
    dipped = fit_series(train, FitSettings())  # the unmarked holiday: an incident the fit must guess at
    assert np.median(dipped.lower) < np.median(with_holiday.lower)


def maintenance_history(end: int) -> tuple[Series, np.ndarray, tuple[int, int]]:
    """Office traffic ending at `end` (plus the truth of the day after), the points of a three-hour
    window two days before and the window itself."""
    full = office_series(end, ())
    down = (full.timestamps >= end - 2 * DAY + 3600) & (full.timestamps < end - 2 * DAY + 4 * 3600)
    return full, down, (int(full.timestamps[down][0]), int(full.timestamps[down][-1]) + STEP)


def test_a_maintenance_window_withdraws_the_band_while_it_lasts() -> None:
    from smartmetrics.engine.fitted import band_problem

    end = WEDNESDAY
    full, down, window = maintenance_history(end)
    ahead = (end + 6 * 3600, end + 8 * 3600)
    outage = Series(full.labels, full.timestamps, np.where(down, 0.0, full.values), STEP)  # a planned outage
    train, t, y = split(outage, end)
    fit = fit_series(train, FitSettings(withdrawn=(window, ahead)))
    gone = (fit.timestamps >= ahead[0]) & (fit.timestamps < ahead[1])
    assert np.isnan(fit.yhat[gone]).all() and np.isnan(fit.lower[gone]).all() and np.isfinite(fit.upper[~gone]).all()
    assert fit.training["withdrawn"] == [list(ahead)] and band_problem(fit, train) is None
    assert outside(fit, t, y) < 0.02


def test_a_maintenance_window_leaves_the_next_days_band_as_without_it() -> None:
    """Whatever the series did in a marked window, the next day's band is the one fitted where the
    window held normal values, or nothing at all; and close to the one fitted on normal values unmarked."""
    end = WEDNESDAY
    full, down, window = maintenance_history(end)
    weird = np.where(down, np.random.default_rng(5).choice([0.0, 50 * np.nanmax(full.values)], down.size), full.values)
    marked = fit_series(split(Series(full.labels, full.timestamps, weird, STEP), end)[0], FitSettings(withdrawn=(window,)))
    normal = fit_series(split(full, end)[0], FitSettings(withdrawn=(window,)))
    gap = fit_series(split(Series(full.labels, full.timestamps, np.where(down, np.nan, full.values), STEP), end)[0],
                     FitSettings())
    plain = fit_series(split(full, end)[0], FitSettings())
    scale = np.ptp(split(full, end)[2])
    for name in ("yhat", "lower", "upper"):
        band = getattr(marked, name)
        assert np.isfinite(band).all()
        assert np.allclose(band, getattr(normal, name), rtol=0, atol=1e-9 * scale)
        assert np.allclose(band, getattr(gap, name), rtol=0, atol=1e-9 * scale)
        assert np.median(np.abs(band - getattr(plain, name))) < 0.01 * scale  # three hours fewer to learn from
    assert not np.allclose(fit_series(split(Series(full.labels, full.timestamps, weird, STEP), end)[0],
                                      FitSettings()).upper, marked.upper, rtol=0, atol=0.01 * scale)  # unmarked, it would move


def test_an_expected_change_widens_its_side_of_the_band_while_it_lasts() -> None:
    end = WEDNESDAY
    full, down, window = maintenance_history(end)
    promo = np.where(down, 3 * full.values, full.values)  # last promotion tripled the traffic
    train, t, y = split(Series(full.labels, full.timestamps, promo, STEP), end)
    ahead = (end + 9 * 3600, end + 12 * 3600)
    fit = fit_series(train, FitSettings(widened=((*window, 3.0, "both"), (*ahead, 3.0, "up"))))
    usual = fit_series(train, FitSettings(withdrawn=(window,)))  # the same training, no change ahead
    inside = (fit.timestamps >= ahead[0]) & (fit.timestamps < ahead[1])
    assert np.allclose(fit.upper[inside] - fit.yhat[inside], 3 * (usual.upper[inside] - usual.yhat[inside]))
    assert np.array_equal(fit.lower, usual.lower) and np.array_equal(fit.yhat, usual.yhat)
    assert np.array_equal(fit.upper[~inside], usual.upper[~inside])
    assert fit.training["widened"] == [[*ahead, 3.0, "up"]]
    surge = np.where((t >= ahead[0]) & (t < ahead[1]), y * 1.15, y)  # the promotion's surge stays inside
    assert outside(fit, t, surge) < 0.01 < outside(usual, t, surge)
    down_only = fit_series(train, FitSettings(widened=((*window, 3.0, "both"), (*ahead, 2.0, "down"))))
    assert np.array_equal(down_only.upper, usual.upper)
    assert np.allclose(usual.yhat[inside] - down_only.lower[inside], 2 * (usual.yhat[inside] - usual.lower[inside]))
