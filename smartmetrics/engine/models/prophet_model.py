"""Prophet (daily + weekly seasonality, automatic changepoints) on a downsampled series.

Prophet is costly (seconds per series), so the ensemble only uses it when `allow_prophet` is set
and the curve type calls for it. Its fitted state is stored as the forecast table itself (bucket
times and predictions over `table_days`), not as Stan parameters: predictions inside the table
are interpolated, later ones repeat the table's last week (or day), so nothing needs Prophet to
be restored.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, ClassVar, Self

import numpy as np

from smartmetrics.engine.models.base import (
    DAY,
    WEEK,
    Forecast,
    array_from_json,
    array_to_json,
    check_fitted,
    finite_points,
    floored_sigma,
)
from smartmetrics.engine.models.resample import bucket_width, downsample
from smartmetrics.engine.series import Series


class ProphetModel:
    """Prophet with daily and weekly seasonality; state is its forecast table."""

    name: ClassVar[str] = "prophet"

    def __init__(self, table_days: int = 8, buckets_per_day: int = 96, changepoints: int = 10):
        self.table_days = table_days
        self.buckets_per_day = buckets_per_day
        self.changepoints = changepoints
        self.table_: np.ndarray | None = None

    def fit(self, series: Series) -> Self:
        """Fit Prophet on bucket means and tabulate its forecast over the next `table_days` days."""
        import pandas as pd
        from prophet import Prophet

        for name in ("prophet", "cmdstanpy"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.width_ = bucket_width(series.step, DAY, self.buckets_per_day)
        grid, y = downsample(series, self.width_)
        if len(y) < 4:
            raise ValueError("prophet needs at least four buckets")
        span = grid[-1] - grid[0]
        model = Prophet(daily_seasonality=span >= DAY, weekly_seasonality=span >= 2 * WEEK,
                        yearly_seasonality=False, n_changepoints=min(self.changepoints, max(0, len(y) // 4)),
                        uncertainty_samples=0)
        future = grid[-1] + self.width_ * np.arange(1, self.table_days * DAY // self.width_ + 1, dtype=np.int64)
        both = np.concatenate((grid, future))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(pd.DataFrame({"ds": pd.to_datetime(grid, unit="s"), "y": y}))
            pred = model.predict(pd.DataFrame({"ds": pd.to_datetime(both, unit="s")}))["yhat"].to_numpy()
        self.t0_, self.table_ = int(future[0]), pred[len(grid):]
        self.repeat_ = WEEK if self.table_days * DAY >= WEEK else DAY
        t, fine = finite_points(series)
        fitted_fine = np.interp(t, grid.astype(float), pred[: len(grid)])
        self.scale_ = floored_sigma(fine - fitted_fine, fine)
        return self

    def predict(self, timestamps: np.ndarray) -> Forecast:
        """Interpolated table; beyond its end, the same phase of its last week (or day)."""
        check_fitted(self, "table_")
        ts = np.asarray(timestamps, dtype=np.int64)
        end = self.t0_ + self.width_ * (len(self.table_) - 1)
        over = np.maximum(0, ts - end)
        ts = ts - (-(-over // self.repeat_)) * self.repeat_
        pos = (ts - self.t0_) / self.width_
        mean = np.interp(pos, np.arange(len(self.table_)), self.table_)
        return Forecast(mean=mean, scale=np.full(len(mean), self.scale_))

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "table_")
        return {
            "model": self.name,
            "params": {"table_days": self.table_days, "buckets_per_day": self.buckets_per_day,
                       "changepoints": self.changepoints},
            "state": {"width": self.width_, "t0": self.t0_, "repeat": self.repeat_,
                      "table": array_to_json(self.table_), "scale": self.scale_},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        model = cls(**data["params"])
        s = data["state"]
        model.width_, model.t0_, model.repeat_ = int(s["width"]), int(s["t0"]), int(s["repeat"])
        model.table_, model.scale_ = array_from_json(s["table"]), float(s["scale"])
        return model
