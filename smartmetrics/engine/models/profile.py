"""Seasonal profile: a robust level per time-of-day slot, optional time-of-week offsets, plus trend and
recent level.

The workhorse for Prometheus curves with daily or weekly cycles. Fitting removes a Theil-Sen trend
of the daily medians and takes the median of each slot across cycles (a 3-slot median filter only
while fewer than `SMOOTH_BELOW` cycles were seen, so a sharp peak that recurs every day is kept), and
keeps a per-slot MAD as the residual scale. The weekly variant adds a half-hour-of-week offset table
(the median residual from the daily shape in each half hour of the week, median-filtered so a
weekend step or ramp survives and noise does not): weekday/weekend levels are learned from a single
week, and half hours not seen yet get no offset. The recent level offset (median residual of the
last hours) follows slow drifts without chasing single points. Fitted state is the tables
themselves, so the model serialises to a few hundred numbers.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from smartmetrics.engine.models.base import (
    DAY,
    MAD_TO_SIGMA,
    WEEK,
    WEEKEND,
    Forecast,
    abs_deviations,
    array_from_json,
    array_to_json,
    check_fitted,
    circular_smooth,
    finite_points,
    floored,
    group_median,
    sigma_of,
    theil_sen_slope,
)
from smartmetrics.engine.robust import median, nanmedian_columns
from smartmetrics.engine.series import Series

SMOOTH_BELOW = 5  # cycles: with fewer, slot medians are noisy enough to need a median filter
WEEK_SLOT = 1800  # seconds per slot of the weekly offset table
MIN_WEEK_SLOT_POINTS = 3


def slot_width(period: int, step: int, max_slots: int) -> int:
    """Seconds per slot: the step, coarsened so a period has at most `max_slots` slots.

    >>> slot_width(86400, 300, 288), slot_width(604800, 300, 336)
    (300, 1800)
    """
    width = max(step, -(-period // max_slots))
    return -(-width // step) * step


def profile_positions(timestamps: np.ndarray, period: int, width: int, step: int) -> np.ndarray:
    """Fractional slot positions of timestamps, slot k's training points centred on position k."""
    phase = np.mod(timestamps, period).astype(np.float64)
    return (phase - (width - step) / 2.0) / width


def interpolate_circular(table: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation in a circular table at fractional positions.

    >>> interpolate_circular(np.array([0.0, 10.0]), np.array([0.5, 1.5, 2.0])).tolist()
    [5.0, 5.0, 0.0]
    """
    n = len(table)
    lo = np.floor(positions).astype(np.int64)
    frac = positions - lo
    return (1 - frac) * table[lo % n] + frac * table[(lo + 1) % n]


def daily_slope(t: np.ndarray, y: np.ndarray, min_days: int = 5, weekly: bool = False) -> float:
    """Trend per second from the Theil-Sen slope of daily medians; 0 with fewer than `min_days` days.

    With `weekly`, only pairs of days a whole number of weeks apart count (0 until there are eight
    days): a quiet weekend at the end of a short history is no downward trend.

    >>> t = np.arange(0, 8 * DAY, 3600)
    >>> y = np.where(np.isin(t // DAY % 7, (2, 3)), 5.0, 10.0) + t / DAY  # weekend dips on a rising line
    >>> round(daily_slope(t, y, weekly=True) * DAY, 3), daily_slope(t[t < 7 * DAY], y[t < 7 * DAY], weekly=True)
    (1.0, 0.0)
    """
    day = (t // DAY).astype(np.int64)
    day -= day.min()
    n_days = int(day.max()) + 1
    if n_days < (max(min_days, 8) if weekly else min_days):
        return 0.0
    med = group_median(day, y, n_days)
    ok = np.isfinite(med)
    return theil_sen_slope(np.arange(n_days)[ok] * float(DAY), med[ok], period=float(WEEK) if weekly else 0.0)


def circular_median3(x: np.ndarray) -> np.ndarray:
    """Median of each element and its two circular neighbours, ignoring NaN (keeps steps and ramps).

    >>> circular_median3(np.array([0.0, 9.0, 0.0, 1.0, 1.0, 1.0])).tolist()
    [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    """
    if len(x) < 3:
        return x.copy()
    stacked = np.vstack((np.roll(x, 1), x, np.roll(x, -1)))
    if not np.isnan(x).any():
        return np.median(stacked, axis=0)
    out = np.full(len(x), np.nan)
    seen = np.isfinite(stacked).any(axis=0)
    out[seen] = nanmedian_columns(stacked[:, seen])
    return out


def week_offsets(t: np.ndarray, resid: np.ndarray) -> np.ndarray:
    """Median residual per half hour of the week (median-filtered); where fewer than 3 points, the
    same half hour on the days of the same kind (`fill_like_days`), else 0."""
    n = WEEK // WEEK_SLOT
    idx = (np.mod(t, WEEK) // WEEK_SLOT).astype(np.int64)
    med = group_median(idx, resid, n)
    med[np.bincount(idx, minlength=n) < MIN_WEEK_SLOT_POINTS] = np.nan
    if not np.isfinite(med).any():
        return np.zeros(n)
    return np.nan_to_num(fill_like_days(circular_median3(med)), nan=0.0)


def fill_like_days(offsets: np.ndarray) -> np.ndarray:
    """Half hours of the week without an offset take the median of the same half hour on the days of
    the same kind (weekday or weekend day) that have one; a new array.

    Two weeks of history see each half hour of the week only twice, and the one Saturday afternoon
    masked as an incident would otherwise fall back to the daily profile, a weekday level.

    >>> week = np.full((7, 2), np.nan); week[[0, 1], 0] = [1.0, 3.0]; week[3] = -5.0  # Thu, Fri; Sun
    >>> fill_like_days(week.ravel()).reshape(7, 2)[:, 0].tolist()  # Sat from Sun, weekdays from Thu/Fri
    [1.0, 3.0, -5.0, -5.0, 2.0, 2.0, 2.0]
    """
    table = np.asarray(offsets, dtype=np.float64).reshape(7, -1)
    out = table.copy()
    weekend = np.isin(np.arange(7), WEEKEND)  # the table's rows start on the epoch's Thursday
    for rows in (weekend, ~weekend):
        block = table[rows]
        seen = np.isfinite(block)
        cols = seen.any(axis=0)
        like = np.full(block.shape[1], np.nan)
        like[cols] = nanmedian_columns(block[:, cols])
        out[rows] = np.where(seen, block, like)
    return out.ravel()


def week_offset_at(offsets: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """The weekly offset of each timestamp (zeros when the table is empty)."""
    if len(offsets) == 0:
        return np.zeros(len(timestamps))
    return offsets[(np.mod(timestamps, WEEK) // WEEK_SLOT).astype(np.int64)]


class SeasonalProfile:
    """Robust median profile over one period (a day by default) with trend adjustment and, when
    `weekly`, half-hour-of-week offsets."""

    name: ClassVar[str] = "profile_day"

    def __init__(self, period: int = DAY, max_slots: int = 288, recent: int = 6 * 3600, trend: bool = True,
                 weekly: bool = False):
        self.period = period
        self.max_slots = max_slots
        self.recent = recent
        self.trend = trend
        self.weekly = weekly
        self.table_: np.ndarray | None = None

    def fit(self, series: Series) -> Self:
        """Learn the slot table, slot scales, trend and recent level from the finite points."""
        t, y = finite_points(series)
        if len(t) < 2:
            raise ValueError("profile needs at least two points")
        step = series.step
        self.width_ = slot_width(self.period, step, self.max_slots)
        self.step_ = step
        self.t_ref_ = int(t[-1])
        self.slope_ = daily_slope(t, y, weekly=self.weekly) if self.trend else 0.0
        detrended = y - self.slope_ * (t - self.t_ref_)
        n_slots = self.period // self.width_
        slots = np.floor(profile_positions(t, self.period, self.width_, step) + 0.5).astype(np.int64) % n_slots
        table, offsets = self._tables(t, detrended, slots, n_slots)
        resid = detrended - table[slots] - week_offset_at(offsets, t)
        recent = t >= t[-1] - self.recent
        self.level_ = float(median(resid[recent])) if recent.sum() >= 3 else 0.0
        self.table_, self.week_ = table, offsets
        self.scales_ = self._slot_scales(slots, resid, n_slots, y)
        return self

    def _tables(self, t: np.ndarray, y: np.ndarray, slots: np.ndarray, n_slots: int) -> tuple[np.ndarray, np.ndarray]:
        """The slot table and, when weekly, the weekly offsets (alternated twice, so that the special
        days do not bend the daily shape)."""
        table = self._slot_table(t, y, slots, n_slots)
        if not self.weekly:
            return table, np.zeros(0)
        offsets = np.zeros(WEEK // WEEK_SLOT)
        for _ in range(2):
            offsets = week_offsets(t, y - table[slots])
            table = self._slot_table(t, y - week_offset_at(offsets, t), slots, n_slots)
        return table, offsets

    def _slot_table(self, t: np.ndarray, y: np.ndarray, slots: np.ndarray, n_slots: int) -> np.ndarray:
        """Median per slot, median-filtered only for short histories. A slot never seen (a gap, or an
        incident cleaning masked on every day the history has) lies on the line between the nearest
        seen slots either side, round the cycle: the daily shape goes on through it. (The overall
        median there cut a notch half the daily swing deep into a young sine's band.)"""
        raw = group_median(slots, y, n_slots)
        seen = np.flatnonzero(np.isfinite(raw))
        if len(seen) < n_slots:  # one seen slot: np.interp gives its value everywhere
            raw = np.interp(np.arange(n_slots), seen, raw[seen], period=n_slots)
        cycles = (t[-1] - t[0]) / self.period
        return circular_median3(raw) if cycles < SMOOTH_BELOW else raw

    def _slot_scales(self, slots: np.ndarray, resid: np.ndarray, n_slots: int, y: np.ndarray) -> np.ndarray:
        """Per-slot robust sigma, smoothed and floored at half the overall one (`robust_sigma` of the
        residuals, from the same absolute deviations the slots' take their medians of)."""
        spread = abs_deviations(resid)  # the residuals of finite points: finite, as robust_sigma wants
        overall = floored(sigma_of(spread, resid), y)
        mad = MAD_TO_SIGMA * group_median(slots, spread, n_slots)
        mad = np.where(np.isfinite(mad), mad, overall)
        return np.maximum(circular_smooth(mad, 9), 0.5 * overall)

    def predict(self, timestamps: np.ndarray) -> Forecast:
        """Slot profile plus trend and recent level at the given timestamps."""
        check_fitted(self, "table_")
        ts = np.asarray(timestamps, dtype=np.int64)
        pos = profile_positions(ts, self.period, self.width_, self.step_)
        mean = interpolate_circular(self.table_, pos) + week_offset_at(self.week_, ts) + self.level_ \
            + self.slope_ * (ts - self.t_ref_)
        return Forecast(mean=mean, scale=interpolate_circular(self.scales_, pos))

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "table_")
        return {
            "model": self.name,
            "params": {"period": self.period, "max_slots": self.max_slots, "recent": self.recent,
                       "trend": self.trend, "weekly": self.weekly},
            "state": {"width": self.width_, "step": self.step_, "t_ref": self.t_ref_, "slope": self.slope_,
                      "level": self.level_, "table": array_to_json(self.table_),
                      "week": array_to_json(self.week_), "scales": array_to_json(self.scales_)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        model = cls(**data["params"])
        s = data["state"]
        model.width_, model.step_, model.t_ref_ = int(s["width"]), int(s["step"]), int(s["t_ref"])
        model.slope_, model.level_ = float(s["slope"]), float(s["level"])
        model.table_, model.scales_ = array_from_json(s["table"]), array_from_json(s["scales"])
        model.week_ = array_from_json(s.get("week", []))
        return model


class WeeklyProfile(SeasonalProfile):
    """The daily profile plus half-hour-of-week offsets: weekday/weekend levels from a week of history."""

    name: ClassVar[str] = "profile_week"

    def __init__(self, period: int = DAY, max_slots: int = 288, recent: int = 6 * 3600, trend: bool = True,
                 weekly: bool = True):
        super().__init__(period=period, max_slots=max_slots, recent=recent, trend=trend, weekly=weekly)
