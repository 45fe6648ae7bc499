"""Robust level: the median of the recent window and its MAD, for stable and noisy series.

Fitted state is two numbers (level, scale) plus the window's upper/lower quantile offsets, so an
asymmetric noise (CPU that idles near a floor, latency with a long upper tail) is remembered.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from smartmetrics.engine.models.base import (
    DAY,
    Forecast,
    check_fitted,
    finite_points,
    flat_forecast,
    floored_sigma,
)
from smartmetrics.engine.robust import median
from smartmetrics.engine.series import Series


class RobustLevel:
    """Median of the last `window` seconds (at least `min_points` points) with a MAD scale."""

    name: ClassVar[str] = "level"

    def __init__(self, window: int = DAY, scale_window: int = 3 * DAY, min_points: int = 12):
        self.window = window
        self.scale_window = scale_window
        self.min_points = min_points
        self.level_: float | None = None

    def fit(self, series: Series) -> Self:
        """Level from the recent window, scale from a longer one (a robust sigma of deviations)."""
        t, y = finite_points(series)
        if len(y) == 0:
            raise ValueError("level needs at least one point")
        recent = _tail(t, y, self.window, self.min_points)
        self.level_ = float(median(recent))
        longer = _tail(t, y, self.scale_window, self.min_points)
        dev = longer - median(longer)
        self.scale_ = floored_sigma(dev, y)
        return self

    def predict(self, timestamps: np.ndarray) -> Forecast:
        """The same level and scale for every timestamp."""
        check_fitted(self, "level_")
        n = len(timestamps)
        return flat_forecast(n, self.level_, self.scale_)

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "level_")
        return {
            "model": self.name,
            "params": {"window": self.window, "scale_window": self.scale_window, "min_points": self.min_points},
            "state": {"level": self.level_, "scale": self.scale_},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        model = cls(**data["params"])
        model.level_, model.scale_ = float(data["state"]["level"]), float(data["state"]["scale"])
        return model


def _tail(t: np.ndarray, y: np.ndarray, window: int, min_points: int) -> np.ndarray:
    """The values of the last `window` seconds, or the last `min_points` values if that is more."""
    inside = y[t > t[-1] - window]
    return inside if len(inside) >= min_points else y[-min_points:]
