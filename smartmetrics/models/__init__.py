"""Forecasting models behind one contract (`base.Forecaster`), by name.

`MODELS` maps the names used in config (`baselines.X.models`) and in the store to classes; the
ensemble instantiates them with their default parameters.
"""

from __future__ import annotations

from smartmetrics.models.base import Forecast, Forecaster, NotFittedError
from smartmetrics.models.decompose import STLDecomposition
from smartmetrics.models.ets import HoltWinters
from smartmetrics.models.fallback import Fallback
from smartmetrics.models.gbm import GradientBoostedQuantile
from smartmetrics.models.intermittent import Intermittent
from smartmetrics.models.level import RobustLevel
from smartmetrics.models.profile import SeasonalProfile, WeeklyProfile
from smartmetrics.models.prophet_model import ProphetModel

MODELS: dict[str, type] = {
    cls.name: cls
    for cls in (
        SeasonalProfile, WeeklyProfile, HoltWinters, STLDecomposition, ProphetModel, RobustLevel,
        Intermittent, GradientBoostedQuantile, Fallback,
    )
}


def model_from_dict(data: dict) -> Forecaster:
    """Restore a fitted model from its `to_dict()` form, whichever family it is."""
    return MODELS[data["model"]].from_dict(data)


__all__ = ["MODELS", "Forecast", "Forecaster", "NotFittedError", "model_from_dict"]
