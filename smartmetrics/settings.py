"""A configured baseline as the engine's settings: what `smartmetrics.config` says, turned into the
pure fit's `FitSettings`, its walk-forward fit function, and the fingerprint that tells whether a
config change calls for a refit. The daemon, `fit`, `classify`, the backtest and `tune` all fit
through here, so they fit alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Collection

from smartmetrics.config import Baseline
from smartmetrics.engine.ensemble import FitSettings, FittedSeries, walk_forward_fit
from smartmetrics.engine.series import Series


def forecast_margin(horizon: float) -> float:
    """Extra forecast beyond the horizon so a late or failed retrain does not leave a gap.

    >>> forecast_margin(86400) / 3600
    6.0
    """
    return max(0.25 * horizon, 3600.0)


def fit_settings(baseline: Baseline, alias: str = "") -> FitSettings:
    """The pure fit's settings for a configured baseline (its `alias` read for what the metric is)."""
    marked = {"settle": baseline.releases.settle, "absorb": baseline.releases.absorb} if baseline.releases else {}
    return FitSettings(
        sensitivity=baseline.sensitivity,
        curve_type=baseline.curve_type,
        models=tuple(baseline.models) if baseline.models else None,
        horizon=int(baseline.horizon + forecast_margin(baseline.horizon)),
        range=baseline.range, hints=f"{alias} {baseline.expr}",
        **marked,
    )


def baseline_fit(baseline: Baseline, sensitivity: str | float | None = None,
                 releases: Collection[int] = (), alias: str = "") -> Callable[[Series, int], FittedSeries]:
    """The daemon's fit of a configured baseline as a walk-forward fit function `(train, horizon)`, at
    another `sensitivity` if given; each training window is told the `releases` up to its end."""
    settings = fit_settings(baseline, alias)
    if sensitivity is not None:
        settings = dataclasses.replace(settings, sensitivity=sensitivity)
    return walk_forward_fit(settings, tuple(releases))


def fit_fingerprint(baseline: Baseline) -> str:
    """A digest of everything in a baseline's config that changes its fit (not its alerting, releases or unit)."""
    fields = baseline.model_dump(mode="json", exclude={"alert", "releases", "unit"})
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
