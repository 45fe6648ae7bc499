"""The fallback: a model that always fits, so that every series gets a band.

Median and robust spread of whatever finite values there are (the whole history); with no finite
value at all it predicts 0 with unit scale. Deliberately simple: it only has to be never wrong by
much and never raise.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from smartmetrics.engine.models.base import Forecast, check_fitted, flat_forecast, floored_sigma
from smartmetrics.engine.series import Series


class Fallback:
    """Median of all finite values with a robust sigma; 0 +- 1 on an empty series."""

    name: ClassVar[str] = "fallback"

    def __init__(self) -> None:
        self.level_: float | None = None

    def fit(self, series: Series) -> Self:
        """Never raises: any shape of input gives a level and a positive scale."""
        y = np.asarray(series.values, dtype=np.float64)
        y = y[np.isfinite(y)]
        if len(y) == 0:
            self.level_, self.scale_ = 0.0, 1.0
            return self
        self.level_ = float(np.median(y))
        self.scale_ = floored_sigma(y, y)
        return self

    def predict(self, timestamps: np.ndarray) -> Forecast:
        """The same level and scale for every timestamp."""
        check_fitted(self, "level_")
        n = len(timestamps)
        return flat_forecast(n, self.level_, self.scale_)

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "level_")
        return {"model": self.name, "params": {}, "state": {"level": self.level_, "scale": self.scale_}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        model = cls()
        model.level_, model.scale_ = float(data["state"]["level"]), float(data["state"]["scale"])
        return model
