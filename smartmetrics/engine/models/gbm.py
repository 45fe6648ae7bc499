"""Gradient-boosted quantile regression (scikit-learn) on calendar features: a flexible learner.

Features are the time of day and the day of week only, so the fitted function repeats every week;
the fitted state is therefore that function tabulated over one week at the training step (exact
at grid timestamps, interpolated between them), which serialises without pickle. The median model
gives the point forecast; the scale is the residual MAD per hour of day. Costly (~0.2 s), so not in
the default ensemble.
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
    array_from_json,
    array_to_json,
    check_fitted,
    finite_points,
    floored_sigma,
    group_median,
)
from smartmetrics.engine.models.profile import interpolate_circular
from smartmetrics.engine.series import Series


def calendar_features(timestamps: np.ndarray) -> np.ndarray:
    """Columns: hour of day (fractional), day of week (0 = Thursday, the epoch's weekday), weekend flag."""
    ts = np.asarray(timestamps, dtype=np.int64)
    hour = np.mod(ts, DAY) / 3600.0
    dow = np.mod(ts // DAY, 7)
    weekend = np.isin(dow, WEEKEND).astype(np.float64)
    return np.column_stack((hour, dow.astype(np.float64), weekend))


class GradientBoostedQuantile:
    """HistGradientBoostingRegressor(loss="quantile", quantile=0.5) on calendar features."""

    name: ClassVar[str] = "gbm"

    def __init__(self, max_iter: int = 80, window: int = 28 * DAY, seed: int = 0):
        self.max_iter = max_iter
        self.window = window
        self.seed = seed
        self.table_: np.ndarray | None = None

    def fit(self, series: Series) -> Self:
        """Fit the median model, tabulate it over a week, and measure residual scales per hour."""
        from sklearn.ensemble import HistGradientBoostingRegressor

        t, y = finite_points(series)
        keep = t > t[-1] - self.window
        t, y = t[keep], y[keep]
        if len(y) < 24:
            raise ValueError("gbm needs at least 24 points")
        model = HistGradientBoostingRegressor(loss="quantile", quantile=0.5, max_iter=self.max_iter,
                                              categorical_features=[1], random_state=self.seed)
        model.fit(calendar_features(t), y)
        self.step_ = series.step
        grid = np.arange(0, WEEK, self.step_, dtype=np.int64)
        self.table_ = model.predict(calendar_features(grid))
        hours = (np.mod(t, DAY) // 3600).astype(np.int64)
        resid = y - model.predict(calendar_features(t))
        mad = MAD_TO_SIGMA * group_median(hours, np.abs(resid - np.median(resid)), 24)
        overall = floored_sigma(resid, y)
        self.scales_ = np.maximum(np.where(np.isfinite(mad), mad, overall), 0.5 * overall)
        return self

    def predict(self, timestamps: np.ndarray) -> Forecast:
        """The tabulated weekly function and the hourly scales at the given timestamps."""
        check_fitted(self, "table_")
        ts = np.asarray(timestamps, dtype=np.int64)
        mean = interpolate_circular(self.table_, np.mod(ts, WEEK) / self.step_)
        scale = self.scales_[(np.mod(ts, DAY) // 3600).astype(np.int64)]
        return Forecast(mean=mean, scale=scale)

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "table_")
        return {
            "model": self.name,
            "params": {"max_iter": self.max_iter, "window": self.window, "seed": self.seed},
            "state": {"step": self.step_, "table": array_to_json(self.table_), "scales": array_to_json(self.scales_)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        model = cls(**data["params"])
        s = data["state"]
        model.step_, model.table_, model.scales_ = int(s["step"]), array_from_json(s["table"]), array_from_json(s["scales"])
        return model
