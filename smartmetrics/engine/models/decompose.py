"""Decomposition model: STL (statsmodels) trend + daily seasonal on hourly buckets, robust residuals.

The trend is extrapolated with the Theil-Sen slope of its last day, damped so a one-day trend is
not projected for a week; the seasonal part repeats the median of the last three cycles. Fitted
state is the seasonal cycle, the trend's end point and slope, and the residual scale per hour of
day measured at the series' own resolution.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from smartmetrics.engine.models.base import (
    DAY,
    Forecast,
    array_from_json,
    array_to_json,
    check_fitted,
    finite_points,
    floored_sigma,
    theil_sen_slope,
)
from smartmetrics.engine.models.resample import bucket_width, downsample
from smartmetrics.engine.series import Series


def damped_offset(dt: np.ndarray, slope: float, half_life: float) -> np.ndarray:
    """Trend contribution after `dt` seconds of a slope whose effect halves every `half_life` seconds.

    >>> damped_offset(np.array([0.0]), 1.0, 10.0).tolist()
    [0.0]
    """
    k = np.log(2.0) / half_life
    return slope * (1 - np.exp(-k * np.maximum(dt, 0.0))) / k


class STLDecomposition:
    """STL on bucket means: trend (damped linear extrapolation) + seasonal cycle + residual scale."""

    name: ClassVar[str] = "stl"

    def __init__(self, period: int = DAY, buckets_per_period: int = 24, half_life: int = DAY):
        self.period = period
        self.buckets_per_period = buckets_per_period
        self.half_life = half_life
        self.cycle_: np.ndarray | None = None

    def fit(self, series: Series) -> Self:
        """Decompose the bucket means and keep what the forecast needs."""
        from statsmodels.tsa.seasonal import STL

        self.width_ = bucket_width(series.step, self.period, self.buckets_per_period)
        grid, y = downsample(series, self.width_)
        m = self.period // self.width_
        if len(y) < 2 * m + 1 or m < 2:
            raise ValueError("STL needs two full seasons")
        res = STL(y, period=m, robust=False).fit()
        seasonal, trend = np.asarray(res.seasonal), np.asarray(res.trend)
        cycles = len(y) // m
        tail = seasonal[len(y) - min(cycles, 3) * m:].reshape(-1, m)
        phase = (grid[len(y) - m:] % self.period) // self.width_
        cycle = np.empty(m)
        cycle[phase] = np.median(tail, axis=0)
        self.cycle_ = cycle
        last_day = min(len(trend), m)
        self.slope_ = theil_sen_slope(grid[-last_day:].astype(float), trend[-last_day:]) if last_day >= 3 else 0.0
        self.t_end_, self.trend_end_ = int(grid[-1]), float(trend[-1])
        self.scale_ = self._fine_scale(series)
        return self

    def _fine_scale(self, series: Series) -> float:
        """Robust sigma of the original points around the in-sample seasonal + trend fit."""
        t, y = finite_points(series)
        recent = t > t[-1] - 7 * DAY
        fit = self._mean(t[recent], in_sample=True)
        return floored_sigma(y[recent] - fit, y)

    def _mean(self, ts: np.ndarray, in_sample: bool = False) -> np.ndarray:
        m = len(self.cycle_)
        pos = (np.mod(ts, self.period) - (self.width_ / 2.0)) / self.width_
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        season = (1 - frac) * self.cycle_[lo % m] + frac * self.cycle_[(lo + 1) % m]
        dt = ts.astype(np.float64) - self.t_end_
        trend = self.trend_end_ + (self.slope_ * dt if in_sample else damped_offset(dt, self.slope_, self.half_life))
        return season + trend

    def predict(self, timestamps: np.ndarray) -> Forecast:
        """Seasonal cycle plus the damped trend at the given timestamps."""
        check_fitted(self, "cycle_")
        mean = self._mean(np.asarray(timestamps, dtype=np.int64))
        return Forecast(mean=mean, scale=np.full(len(mean), self.scale_))

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "cycle_")
        return {
            "model": self.name,
            "params": {"period": self.period, "buckets_per_period": self.buckets_per_period,
                       "half_life": self.half_life},
            "state": {"width": self.width_, "cycle": array_to_json(self.cycle_), "slope": self.slope_,
                      "t_end": self.t_end_, "trend_end": self.trend_end_, "scale": self.scale_},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        model = cls(**data["params"])
        s = data["state"]
        model.width_, model.t_end_ = int(s["width"]), int(s["t_end"])
        model.cycle_, model.slope_ = array_from_json(s["cycle"]), float(s["slope"])
        model.trend_end_, model.scale_ = float(s["trend_end"]), float(s["scale"])
        return model
