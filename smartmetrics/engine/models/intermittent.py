"""Intermittent series (sparse counters, error bursts): probability of a non-zero value and its sizes.

Croston-style in spirit: the point forecast is the expected value `p x mean(size)`, and the scale
is the standard deviation of the zero-inflated mixture, so the calibrated band keeps 0 inside and
puts its upper edge at the sizes that non-zero points usually take. Fitted state: `p`, the size
quantiles and the moments, over the last `window` seconds.
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
    flat_forecast,
)
from smartmetrics.engine.series import Series

QUANTILES = (0.5, 0.9, 0.99)


class Intermittent:
    """Zero-inflated level: P(non-zero), size quantiles, mean and std of the mixture."""

    name: ClassVar[str] = "intermittent"

    def __init__(self, window: int = 7 * DAY, zero_tol: float = 0.0):
        self.window = window
        self.zero_tol = zero_tol
        self.p_nonzero_: float | None = None

    def fit(self, series: Series) -> Self:
        """Estimate the non-zero probability and the size distribution over the recent window."""
        t, y = finite_points(series)
        if len(y) == 0:
            raise ValueError("intermittent needs at least one point")
        y = y[t > t[-1] - self.window]
        nonzero = np.abs(y) > self.zero_tol
        sizes = y[nonzero]
        self.p_nonzero_ = float(nonzero.mean())
        self.size_quantiles_ = np.quantile(sizes, QUANTILES) if len(sizes) else np.zeros(len(QUANTILES))
        self.mean_ = float(y.mean())
        self.scale_ = max(float(y.std()), 1e-9 + 1e-3 * float(np.abs(sizes).mean() if len(sizes) else 0.0))
        return self

    def predict(self, timestamps: np.ndarray) -> Forecast:
        """Expected value and mixture std for every timestamp (the process has no memory of time)."""
        check_fitted(self, "p_nonzero_")
        n = len(timestamps)
        return flat_forecast(n, self.mean_, self.scale_)

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "p_nonzero_")
        return {
            "model": self.name,
            "params": {"window": self.window, "zero_tol": self.zero_tol},
            "state": {"p_nonzero": self.p_nonzero_, "size_quantiles": array_to_json(self.size_quantiles_),
                      "mean": self.mean_, "scale": self.scale_},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        model = cls(**data["params"])
        s = data["state"]
        model.p_nonzero_, model.mean_, model.scale_ = float(s["p_nonzero"]), float(s["mean"]), float(s["scale"])
        model.size_quantiles_ = array_from_json(s["size_quantiles"])
        return model
