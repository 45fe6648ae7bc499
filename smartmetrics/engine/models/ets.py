"""Holt-Winters (additive ETS with a damped trend) on a downsampled series, via statsmodels.

statsmodels estimates the smoothing parameters and states; the fitted state kept here is exactly
what forecasting needs (parameters, final level, trend and the last season of seasonal states),
and `predict` applies the Holt-Winters forecast equation itself, so the model serialises to a few
dozen numbers and restores without statsmodels. Costly to fit (~0.1 s), so it is not in the default
ensemble; name it in `models` to use it.
"""

from __future__ import annotations

import warnings
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
)
from smartmetrics.engine.models.resample import bucket_width, downsample
from smartmetrics.engine.series import Series


def holt_winters_path(level: float, trend: float, phi: float, season: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Forecasts `h` >= 1 buckets ahead: level + (phi + ... + phi^h) trend + season[(h - 1) mod m].

    >>> holt_winters_path(10.0, 1.0, 1.0, np.array([0.0, 5.0]), np.array([1, 2, 3])).tolist()
    [11.0, 17.0, 13.0]
    """
    h = np.asarray(h, dtype=np.float64)
    damp = h if phi == 1.0 else phi * (1 - phi**h) / (1 - phi)
    return level + damp * trend + season[(h.astype(np.int64) - 1) % len(season)]


class HoltWinters:
    """Additive damped-trend Holt-Winters with a daily season on hourly (or coarser) buckets."""

    name: ClassVar[str] = "ets"

    def __init__(self, period: int = DAY, buckets_per_period: int = 24, window: int = 14 * DAY):
        self.period = period
        self.buckets_per_period = buckets_per_period
        self.window = window
        self.level_: float | None = None

    def fit(self, series: Series) -> Self:
        """Estimate the model on the last `window` seconds of bucket means (two seasons at least)."""
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        self.width_ = bucket_width(series.step, self.period, self.buckets_per_period)
        grid, y = downsample(series, self.width_)
        keep = grid > grid[-1] - self.window
        grid, y = grid[keep], y[keep]
        m = self.period // self.width_
        if len(y) < 2 * m + 2:
            raise ValueError("Holt-Winters needs two full seasons")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ExponentialSmoothing(y, trend="add", damped_trend=True, seasonal="add", seasonal_periods=m,
                                       initialization_method="heuristic").fit()
        self.phi_ = float(res.params["damping_trend"])
        self.level_, self.trend_ = float(res.level[-1]), float(res.trend[-1])
        self.season_ = np.asarray(res.season[-m:], dtype=np.float64)
        self.t_last_ = int(grid[-1])
        self.scale_ = self._fine_scale(series, res.fittedvalues, grid)
        return self

    def _fine_scale(self, series: Series, fitted: np.ndarray, grid: np.ndarray) -> float:
        """Robust sigma of the fine-grained values around the one-step-ahead bucket fits."""
        t, y = finite_points(series)
        inside = t >= grid[0]
        idx = np.clip((t[inside] - grid[0]) // self.width_, 0, len(grid) - 1)
        return floored_sigma(y[inside] - np.asarray(fitted)[idx], y)

    def predict(self, timestamps: np.ndarray) -> Forecast:
        """The Holt-Winters path at the buckets around each timestamp, interpolated linearly."""
        check_fitted(self, "level_")
        pos = (np.asarray(timestamps, dtype=np.float64) - self.t_last_) / self.width_
        h0 = np.maximum(np.floor(pos), 1.0)
        frac = np.clip(pos - h0, 0.0, 1.0)
        a = holt_winters_path(self.level_, self.trend_, self.phi_, self.season_, h0)
        b = holt_winters_path(self.level_, self.trend_, self.phi_, self.season_, h0 + 1)
        mean = (1 - frac) * a + frac * b
        return Forecast(mean=mean, scale=np.full(len(mean), self.scale_))

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "level_")
        return {
            "model": self.name,
            "params": {"period": self.period, "buckets_per_period": self.buckets_per_period, "window": self.window},
            "state": {"width": self.width_, "phi": self.phi_, "level": self.level_, "trend": self.trend_,
                      "season": array_to_json(self.season_), "t_last": self.t_last_, "scale": self.scale_},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        model = cls(**data["params"])
        s = data["state"]
        model.width_, model.t_last_ = int(s["width"]), int(s["t_last"])
        model.phi_, model.level_, model.trend_ = float(s["phi"]), float(s["level"]), float(s["trend"])
        model.season_, model.scale_ = array_from_json(s["season"]), float(s["scale"])
        return model
