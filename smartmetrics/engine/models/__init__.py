"""Forecasting models behind one contract (`base.Forecaster`), by name.

`MODELS` maps the names used in config (`baselines.X.models`) and in the store to classes; the
ensemble instantiates them with their default parameters.
"""

from __future__ import annotations

from smartmetrics.engine.models.base import Forecast, Forecaster, NotFittedError
from smartmetrics.engine.models.decompose import STLDecomposition
from smartmetrics.engine.models.ets import HoltWinters
from smartmetrics.engine.models.fallback import Fallback
from smartmetrics.engine.models.gbm import GradientBoostedQuantile
from smartmetrics.engine.models.intermittent import Intermittent
from smartmetrics.engine.models.level import RobustLevel
from smartmetrics.engine.models.profile import SeasonalProfile, WeeklyProfile
from smartmetrics.engine.models.prophet_model import ProphetModel

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
